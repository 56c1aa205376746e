package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// queueConfig is a relay in queue mode with backoffs in milliseconds;
// extra replaces [queue] settings ("max_lifetime = \"1s\"").
func queueConfig(t *testing.T, upstreamAddr string, extra string) string {
	host, port, _ := net.SplitHostPort(upstreamAddr)
	settings := map[string]string{"min_backoff": `"200ms"`, "max_backoff": `"1s"`, "max_lifetime": `"1h"`}
	for _, line := range strings.Split(extra, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			settings[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	var queue strings.Builder
	for _, k := range []string{"min_backoff", "max_backoff", "max_lifetime"} {
		fmt.Fprintf(&queue, "%s = %s\n", k, settings[k])
	}
	return fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "up"

[queue]
%s

[[profiles]]
name = "up"
hostname = %q
port = %s
smtp_timeout = "2s"
max_connections = 2
`, t.TempDir(), queue.String(), host, port)
}

// sendOne submits a message and returns the DATA reply.
func sendOne(t *testing.T, addr, from string, to ...string) string {
	t.Helper()
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<"+from+">", 250, "")
	for _, r := range to {
		c.must("RCPT TO:<"+r+">", 250, "")
	}
	code, last := c.data(msgBody)
	if code != 250 {
		t.Fatalf("DATA → %q; want 250", last)
	}
	c.cmd("QUIT")
	return last
}

// sendBurst sends n messages one after another on one connection, each
// to its own recipient.
func sendBurst(t *testing.T, addr string, n int) {
	t.Helper()
	c := dial(t, addr)
	c.ehlo()
	for i := 0; i < n; i++ {
		c.must("MAIL FROM:<a@example.com>", 250, "")
		c.must("RCPT TO:<b"+strconv.Itoa(i)+"@example.com>", 250, "")
		if code, last := c.data(msgBody); code != 250 {
			t.Fatalf("DATA → %q", last)
		}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueueAcceptsThenDelivers(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u.Addr, ""), sp)
	reply := sendOne(t, addr, "alarms@plant.example.com", "ops@example.com")
	if !strings.HasPrefix(reply, "250 2.0.0 OK queued as ") {
		t.Fatalf("DATA reply %q; want 250 2.0.0 OK queued as ID", reply)
	}
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	id := strings.TrimPrefix(reply, "250 2.0.0 OK queued as ")
	if !strings.HasPrefix(string(m.Data), "Received: ") || !strings.Contains(string(m.Data), "id "+id) || !strings.HasSuffix(string(m.Data), msgBody) {
		t.Fatalf("upstream got %q; want the body after a Received header naming %s, and nothing else", m.Data, id)
	}
	waitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueDeliversLegacySpool: mail queued by the relay of the two-file
// spool format (ID.eml and ID.json, format 1) is delivered after an
// upgrade: to the recipient the upstream takes, and bounced, quoting its
// headers, for the one it refuses.
func TestQueueDeliversLegacySpool(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
		}
		return nil
	}})
	dir := t.TempDir()
	const id = "1j12l9p3krhqvsmrr5i"
	body := "Received: from plc ([10.0.0.7])\r\n\tby relay (relay) with ESMTP id " + id + ";\r\n\tTue, 25 Nov 2025 07:59:12 +0000\r\n" +
		"From: alarms@plant.example.com\r\nSubject: queued before the upgrade\r\n\r\nTank 3 high level\r\n"
	env := fmt.Sprintf(`{
  "version": 1,
  "id": %q,
  "profile": "up",
  "from": "alarms@plant.example.com",
  "recipients": [
    {
      "addr": "ops@example.com",
      "state": "pending"
    },
    {
      "addr": "gone@example.com",
      "state": "pending"
    }
  ],
  "arrived": "2025-11-25T07:59:12.123456Z",
  "attempts": 0,
  "size": %d
}
`, id, len(body))
	os.MkdirAll(filepath.Join(dir, "queue"), 0o700)
	os.WriteFile(filepath.Join(dir, "queue", id+".eml"), []byte(body), 0o600)
	os.WriteFile(filepath.Join(dir, "queue", id+".json"), []byte(env), 0o600)

	sp := openSpool(t, dir)
	if sp.Len() != 1 {
		t.Fatalf("spool of the two-file format loads %d messages; want 1", sp.Len())
	}
	startRelayWith(t, queueConfig(t, u.Addr, ""), sp)
	msgs := u.WaitMessages(t, 2, 10*time.Second)
	var orig, dsn *testpeer.Message
	for i := range msgs {
		if msgs[i].From == "" {
			dsn = &msgs[i]
		} else {
			orig = &msgs[i]
		}
	}
	if orig == nil || string(orig.Data) != body || len(orig.To) != 1 || orig.To[0] != "ops@example.com" {
		t.Fatalf("upstream got %+v; want the queued message, as it was, to ops@example.com", orig)
	}
	if dsn == nil || !strings.Contains(string(dsn.Data), "Subject: queued before the upgrade") ||
		!strings.Contains(string(dsn.Data), "Final-Recipient: rfc822; gone@example.com") {
		t.Fatalf("bounce %+v; want one quoting the headers, for gone@example.com", dsn)
	}
	waitFor(t, "the spool to empty", 5*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "queue", "*"))
		return sp.Len() == 0 && len(files) == 0
	})
}

// TestQueueUpstreamDownThenUp: a message gets 250 while the upstream is
// down, is listed with the error, and arrives once the upstream is back.
func TestQueueUpstreamDownThenUp(t *testing.T) {
	upAddr := testpeer.FreeAddr(t)
	sp := openSpool(t, t.TempDir())
	addr, srv := startRelayWith(t, queueConfig(t, upAddr, ""), sp)
	for i := 0; i < 3; i++ {
		sendOne(t, addr, "alarms@plant.example.com", "ops@example.com")
	}
	waitFor(t, "a failed attempt", 5*time.Second, func() bool {
		envs, _ := srv.Queue().List()
		return len(envs) == 3 && envs[0].Attempts > 0 && strings.Contains(envs[0].LastError, "connect")
	})
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: upAddr})
	if got := len(u.WaitMessages(t, 3, 10*time.Second)); got != 3 {
		t.Fatalf("upstream got %d messages; want 3", got)
	}
	waitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
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
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u.Addr, ""), sp)
	sendOne(t, addr, "alarms@plant.example.com", "ops@example.com")
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

// TestQueueRefusedRecipientBounces: one of two recipients refused with
// 550: one delivered, one DSN back to the sender.
func TestQueueRefusedRecipientBounces(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
		}
		return nil
	}})
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u.Addr, ""), sp)
	sendOne(t, addr, "alarms@plant.example.com", "ops@example.com", "gone@example.com")
	msgs := u.WaitMessages(t, 2, 10*time.Second)
	var orig, dsn *testpeer.Message
	for i := range msgs {
		if msgs[i].From == "" {
			dsn = &msgs[i]
		} else {
			orig = &msgs[i]
		}
	}
	if orig == nil || len(orig.To) != 1 || orig.To[0] != "ops@example.com" {
		t.Fatalf("original delivered as %+v; want to ops@example.com only", orig)
	}
	if dsn == nil || len(dsn.To) != 1 || dsn.To[0] != "alarms@plant.example.com" {
		t.Fatalf("bounce %+v; want one from <> to the sender", dsn)
	}
	data := string(dsn.Data)
	for _, want := range []string{
		"multipart/report", "report-type=delivery-status", "Auto-Submitted: auto-replied",
		"Content-Type: message/delivery-status", "Final-Recipient: rfc822; gone@example.com",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; ", "User unknown",
		"Content-Type: text/rfc822-headers", "Subject: pump 3",
	} {
		if !strings.Contains(data, want) {
			t.Errorf("bounce lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(data, "Pump 3 stopped.") {
		t.Errorf("bounce quotes the original body; want headers only")
	}
	waitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueNoBounceLoops: mail from the null sender is never bounced, and
// a bounce that cannot be delivered is dropped, not bounced again.
func TestQueueNoBounceLoops(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "nobody here"}
	}})
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u.Addr, ""), sp)
	sendOne(t, addr, "", "gone@example.com")
	sendOne(t, addr, "also-gone@example.com", "gone@example.com") // its bounce is refused too
	waitFor(t, "the spool to empty", 10*time.Second, func() bool { return sp.Len() == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := len(u.Messages()); n != 0 {
		t.Fatalf("upstream accepted %d messages; want none", n)
	}
	if sp.Len() != 0 {
		t.Fatalf("spool holds %d messages; a bounce loop?", sp.Len())
	}
}

// TestQueueExpiry: a message that outlives max_lifetime bounces with
// status 4.4.7.
func TestQueueExpiry(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to == "slow@example.com" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
		}
		return nil
	}})
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u.Addr, `max_lifetime = "700ms"`), sp)
	sendOne(t, addr, "alarms@plant.example.com", "slow@example.com")
	dsn := u.WaitMessages(t, 1, 10*time.Second)[0]
	data := string(dsn.Data)
	for _, want := range []string{"Final-Recipient: rfc822; slow@example.com", "Status: 4.2.1", "gave up after", "mailbox busy"} {
		if !strings.Contains(data, want) {
			t.Errorf("expiry bounce lacks %q:\n%s", want, data)
		}
	}
	waitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueRestartRecovery: a message queued while the upstream was down is
// delivered by a new server on the same spool.
func TestQueueRestartRecovery(t *testing.T) {
	dir := t.TempDir()
	upAddr := testpeer.FreeAddr(t)
	cfg := queueConfig(t, upAddr, `min_backoff = "1h"
max_backoff = "1h"`)
	sp1, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, srv := startRelayWith(t, cfg, sp1)
	id := strings.TrimPrefix(sendOne(t, addr, "alarms@plant.example.com", "ops@example.com"), "250 2.0.0 OK queued as ")
	waitFor(t, "a failed attempt", 5*time.Second, func() bool {
		env, err := sp1.Envelope(id)
		return err == nil && env.Attempts == 1
	})
	srv.Close()
	srv.Queue().Close()
	sp1.Close()

	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: upAddr})
	sp2 := openSpool(t, dir)
	if sp2.Len() != 1 {
		t.Fatalf("reopened spool holds %d messages; want 1", sp2.Len())
	}
	// The backoff is an hour; a restart does not make it due, retry does.
	_, srv2 := startRelayWith(t, cfg, sp2)
	if n, err := srv2.Queue().Retry(context.Background(), "all"); err != nil || n != 1 {
		t.Fatalf("Retry(all) = %d, %v", n, err)
	}
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	if !strings.Contains(string(m.Data), "id "+id) {
		t.Fatalf("upstream got %q; want message %s", m.Data, id)
	}
}

func TestQueueBurstSharesConnections(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u.Addr, ""), sp)
	const n = 30
	sendBurst(t, addr, n)
	u.WaitMessages(t, n, 10*time.Second)
	if s := u.Sessions(); s > 2 {
		t.Fatalf("upstream saw %d connections for a burst; want at most max_connections = 2", s)
	}
}

func TestQueueDelete(t *testing.T) {
	sp := openSpool(t, t.TempDir())
	addr, srv := startRelayWith(t, queueConfig(t, testpeer.FreeAddr(t), `min_backoff = "1h"
max_backoff = "1h"`), sp)
	id := strings.TrimPrefix(sendOne(t, addr, "a@example.com", "b@example.com"), "250 2.0.0 OK queued as ")
	waitFor(t, "a failed attempt", 5*time.Second, func() bool {
		env, err := sp.Envelope(id)
		return err == nil && env.Attempts == 1
	})
	// The worker may still hold the message for a moment after the attempt.
	var err error
	waitFor(t, "Delete to succeed", 5*time.Second, func() bool {
		err = srv.Queue().Delete(id)
		return !errors.Is(err, ErrInDelivery)
	})
	if err != nil {
		t.Fatalf("Delete(%s) = %v", id, err)
	}
	if sp.Len() != 0 {
		t.Fatalf("spool holds %d messages after delete", sp.Len())
	}
	if err := srv.Queue().Delete(id); err == nil {
		t.Fatalf("second Delete(%s) succeeded", id)
	}
}

// TestQueueSpoolWriteError: when the spool cannot be written, the client
// gets 451 4.3.0, never 250, and nothing is half-queued.
func TestQueueSpoolWriteError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("running as root: permissions do not stop writes; closing the spool instead")
	}
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startRelayWith(t, queueConfig(t, testpeer.FreeAddr(t), ""), sp)
	sp.Close() // every Create and Commit now fails
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	code, last := c.data(msgBody)
	if code != 451 || !strings.HasPrefix(last, "451 4.3.0") {
		t.Fatalf("DATA → %q; want 451 4.3.0", last)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "queue", "*"))
	if len(files) != 0 {
		t.Fatalf("spool holds %v after a failed write", files)
	}
}

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

// TestQueueKeptConnectionDiedWhileIdle: when the upstream closed a kept
// connection, the next message goes out on a new one at once instead of
// waiting for a retry.
func TestQueueKeptConnectionDiedWhileIdle(t *testing.T) {
	u1 := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := openSpool(t, t.TempDir())
	addr, _ := startRelayWith(t, queueConfig(t, u1.Addr, "min_backoff = \"1h\"\nmax_backoff = \"1h\""), sp)
	sendOne(t, addr, "a@example.com", "b@example.com")
	u1.WaitMessages(t, 1, 5*time.Second)
	u1.Close() // drops the connection the queue keeps for the next message
	u2 := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: u1.Addr})
	sendOne(t, addr, "a@example.com", "c@example.com")
	u2.WaitMessages(t, 1, 5*time.Second)
}

// TestQueueUpstreamRefusesExtraConnections: when the upstream takes fewer
// connections than max_connections (421 to the rest), the open ones carry
// the burst; nothing is deferred.
func TestQueueUpstreamRefusesExtraConnections(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{MaxConns: 1})
	sp := openSpool(t, t.TempDir())
	cfg := strings.Replace(queueConfig(t, u.Addr, "min_backoff = \"1h\"\nmax_backoff = \"1h\""), "max_connections = 2", "max_connections = 4", 1)
	addr, _ := startRelayWith(t, cfg, sp)
	const n = 20
	sendBurst(t, addr, n)
	// With min_backoff an hour, a deferred message would not arrive.
	u.WaitMessages(t, n, 15*time.Second)
}

// TestQueueProfileRemovedByReloadWaits: mail of a profile a reload
// removed waits in the queue, past max_lifetime, instead of bouncing
// through a profile that is gone.
func TestQueueProfileRemovedByReloadWaits(t *testing.T) {
	sp := openSpool(t, t.TempDir())
	cfg := queueConfig(t, testpeer.FreeAddr(t), "min_backoff = \"100ms\"\nmax_backoff = \"200ms\"\nmax_lifetime = \"600ms\"")
	addr, srv := startRelayWith(t, cfg, sp)
	id := strings.TrimPrefix(sendOne(t, addr, "a@example.com", "b@example.com"), "250 2.0.0 OK queued as ")
	without := strings.Replace(strings.Replace(cfg, `name = "up"`, `name = "other"`, 1), `default_profile = "up"`, `default_profile = "other"`, 1)
	newCfg, err := config.Parse("test.toml", []byte(without))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Apply(newCfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past max_lifetime, several attempts
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatalf("message %s left the queue: %v", id, err)
	}
	if env.Recipients[0].State != spool.Pending || !strings.Contains(env.LastError, "not in the configuration") {
		t.Fatalf("envelope %+v; want pending with the missing profile as its error", env)
	}
}
