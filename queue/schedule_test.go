package queue

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

func TestBackoff(t *testing.T) {
	s := Schedule{Min: 5 * time.Minute, Max: time.Hour}
	tests := []struct {
		attempts int
		jitter   float64
		want     time.Duration
	}{
		{1, 1, 5 * time.Minute},
		{2, 1, 10 * time.Minute},
		{3, 1, 20 * time.Minute},
		{4, 1, 40 * time.Minute},
		{5, 1, time.Hour},
		{500, 1, time.Hour},
		{1, 0.9, 270 * time.Second},
		{2, 1.1, 11 * time.Minute},
	}
	for _, tt := range tests {
		if got := s.Backoff(tt.attempts, tt.jitter); got != tt.want {
			t.Errorf("Backoff(%d, %v) = %v; want %v", tt.attempts, tt.jitter, got, tt.want)
		}
	}
	// Non-integer growth survives: a 1.5 s minimum doubles exactly.
	if got := (Schedule{Min: 1500 * time.Millisecond, Max: time.Hour}).Backoff(3, 1); got != 6*time.Second {
		t.Errorf("Backoff(3) with 1.5 s = %v; want 6 s", got)
	}
}

// TestQueueRetriesAfter451: the upstream answers 451 twice, then 250: the
// message is delivered on the third attempt, after the backoff.
func TestQueueRetriesAfter451(t *testing.T) {
	var mu sync.Mutex
	var attempts []time.Time
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnMail: func(string) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, time.Now())
		if len(attempts) <= 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		}
		return nil
	}})
	h := startQueue(t, testConfig(t, u.Addr), testpeer.OpenSpool(t, t.TempDir()), Options{})
	h.submit(t, "alarms@plant.example.com", "ops@example.com")
	u.WaitMessages(t, 1, 15*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 3 {
		t.Fatalf("upstream saw %d attempts; want 3", len(attempts))
	}
	// min_backoff 200ms, doubling, jitter ±10%: at least 180ms, then 360ms.
	if gap := attempts[1].Sub(attempts[0]); gap < 180*time.Millisecond {
		t.Errorf("second attempt %v after the first; want at least the backoff", gap)
	}
	if gap := attempts[2].Sub(attempts[1]); gap < 360*time.Millisecond {
		t.Errorf("third attempt %v after the second; want at least the doubled backoff", gap)
	}
}

// TestQueueUpstreamDownThenUp: a message queued while the upstream is
// down is listed with the error, and arrives once the upstream is back.
func TestQueueUpstreamDownThenUp(t *testing.T) {
	upAddr := testpeer.FreeAddr(t)
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, upAddr), sp, Options{})
	for i := 0; i < 3; i++ {
		h.submit(t, "alarms@plant.example.com", "ops@example.com")
	}
	testpeer.WaitFor(t, "a failed attempt", 5*time.Second, func() bool {
		envs, _ := h.q.List()
		return len(envs) == 3 && envs[0].Attempts > 0 && strings.Contains(envs[0].LastError, "connect")
	})
	envs, _ := h.q.List()
	if r := envs[0].Recipients[0].Reply; r.Code != 0 || !strings.Contains(r.Text, "connect") {
		t.Errorf("recipient's reply %+v; want the connection error, without a code", r)
	}
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: upAddr})
	if got := len(u.WaitMessages(t, 3, 10*time.Second)); got != 3 {
		t.Fatalf("upstream got %d messages; want 3", got)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueTemporaryRefusalRecorded: a recipient refused with 451 stays
// pending with the upstream's code, enhanced code and text.
func TestQueueTemporaryRefusalRecorded(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: refuse("busy@example.com", 451, smtp.EnhancedCode{4, 2, 1}, "mailbox busy")})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, u.Addr, slowBackoff...), sp, Options{})
	id := h.submit(t, "alarms@plant.example.com", "ops@example.com", "busy@example.com")
	var env *spool.Envelope
	testpeer.WaitFor(t, "the deferral", 5*time.Second, func() bool {
		env, _ = sp.Envelope(id)
		return env != nil && env.Attempts == 1
	})
	ops, busy := env.Recipients[0], env.Recipients[1]
	if ops.State != spool.Delivered || busy.State != spool.Pending {
		t.Fatalf("recipients %+v; want ops delivered, busy pending", env.Recipients)
	}
	if r := busy.Reply; r.Code != 451 || r.Enhanced != "4.2.1" || !strings.Contains(r.Text, "RCPT TO: 451 4.2.1 mailbox busy") {
		t.Errorf("busy@'s reply %+v; want 451, 4.2.1 and the upstream's text", r)
	}
}

// TestQueueExpiry: a message that outlives max_lifetime bounces with the
// status of the last reply.
func TestQueueExpiry(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: refuse("slow@example.com", 451, smtp.EnhancedCode{4, 2, 1}, "mailbox busy")})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, u.Addr, `max_lifetime = "700ms"`), sp, Options{})
	h.submit(t, "alarms@plant.example.com", "slow@example.com")
	dsn := u.WaitMessages(t, 1, 10*time.Second)[0]
	data := string(dsn.Data)
	for _, want := range []string{"Final-Recipient: rfc822; slow@example.com", "Status: 4.2.1", "gave up after", "mailbox busy"} {
		if !strings.Contains(data, want) {
			t.Errorf("expiry bounce lacks %q:\n%s", want, data)
		}
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueExpiryWithoutReply: a message that expires without any reply
// from the upstream (it never answered) bounces with status 4.4.7,
// delivery time expired.
func TestQueueExpiryWithoutReply(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := testpeer.OpenSpool(t, t.TempDir())
	// The message's profile points nowhere; its bounce goes through a
	// reload that points it at u.
	h := startQueue(t, testConfig(t, testpeer.FreeAddr(t), `max_lifetime = "500ms"`, `min_backoff = "100ms"`, `max_backoff = "100ms"`), sp, Options{})
	id := h.submit(t, "alarms@plant.example.com", "ops@example.com")
	testpeer.WaitFor(t, "the expiry", 5*time.Second, func() bool {
		envs, _ := sp.List()
		return len(envs) == 1 && envs[0].ID != id && envs[0].Bounce
	})
	h.profiles.reload(t, testConfig(t, u.Addr, `max_lifetime = "500ms"`))
	h.q.signal()
	var dsn *testpeer.Message
	testpeer.WaitFor(t, "the bounce", 10*time.Second, func() bool {
		_, dsn = splitBounce(u.Messages())
		return dsn != nil
	})
	for _, want := range []string{"Final-Recipient: rfc822; ops@example.com", "Status: 4.4.7", "gave up after", "connect"} {
		if !strings.Contains(string(dsn.Data), want) {
			t.Errorf("expiry bounce lacks %q:\n%s", want, dsn.Data)
		}
	}
}

// TestQueueProfileRemovedByReloadWaits: mail of a profile a reload
// removed waits in the queue, past max_lifetime, instead of bouncing
// through a profile that is gone.
func TestQueueProfileRemovedByReloadWaits(t *testing.T) {
	sp := testpeer.OpenSpool(t, t.TempDir())
	cfg := testConfig(t, testpeer.FreeAddr(t), `min_backoff = "100ms"`, `max_backoff = "200ms"`, `max_lifetime = "600ms"`)
	h := startQueue(t, cfg, sp, Options{})
	id := h.submit(t, "a@example.com", "b@example.com")
	h.profiles.reload(t, strings.Replace(strings.Replace(cfg, `name = "up"`, `name = "other"`, 1), `default_profile = "up"`, `default_profile = "other"`, 1))
	time.Sleep(1500 * time.Millisecond) // past max_lifetime, several attempts
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatalf("message %s left the queue: %v", id, err)
	}
	if env.Recipients[0].State != spool.Pending || !strings.Contains(env.LastError, "not in the configuration") {
		t.Fatalf("envelope %+v; want pending with the missing profile as its error", env)
	}
}
