package queue

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

// greylistOnce answers the first MAIL FROM of each sender with 451 and
// takes the rest.
func greylistOnce() func(string) error {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(from string) error {
		mu.Lock()
		defer mu.Unlock()
		if !seen[from] {
			seen[from] = true
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		}
		return nil
	}
}

func TestQueueDelete(t *testing.T) {
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, testpeer.FreeAddr(t), slowBackoff...), sp, Options{})
	id := h.submit(t, "a@example.com", "b@example.com")
	testpeer.WaitFor(t, "a failed attempt", 5*time.Second, func() bool {
		env, err := sp.Envelope(id)
		return err == nil && env.Attempts == 1
	})
	// The worker may still hold the message for a moment after the attempt.
	var err error
	testpeer.WaitFor(t, "Delete to succeed", 5*time.Second, func() bool {
		err = h.q.Delete(id)
		return !errors.Is(err, ErrInDelivery)
	})
	if err != nil {
		t.Fatalf("Delete(%s) = %v", id, err)
	}
	if sp.Len() != 0 {
		t.Fatalf("spool holds %d messages after delete", sp.Len())
	}
	if err := h.q.Delete(id); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("second Delete(%s) = %v; want ErrNotFound", id, err)
	}
}

// TestQueueDeleteInDelivery: a message a worker is delivering cannot be
// deleted; it is delivered.
func TestQueueDeleteInDelivery(t *testing.T) {
	inData := make(chan struct{})
	proceed := make(chan struct{})
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnData: func(testpeer.Message) error {
		close(inData)
		<-proceed
		return nil
	}})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, u.Addr), sp, Options{})
	id := h.submit(t, "a@example.com", "b@example.com")
	<-inData
	err := h.q.Delete(id)
	close(proceed)
	if !errors.Is(err, ErrInDelivery) {
		t.Fatalf("Delete(%s) during its delivery = %v; want ErrInDelivery", id, err)
	}
	u.WaitMessages(t, 1, 5*time.Second)
}

// TestQueueRestartRecovery: a message queued while the upstream was down is
// delivered by a new queue on the same spool.
func TestQueueRestartRecovery(t *testing.T) {
	dir := t.TempDir()
	upAddr := testpeer.FreeAddr(t)
	cfg := testConfig(t, upAddr, slowBackoff...)
	sp1, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h1 := startQueue(t, cfg, sp1, Options{})
	id := h1.submit(t, "alarms@plant.example.com", "ops@example.com")
	testpeer.WaitFor(t, "a failed attempt", 5*time.Second, func() bool {
		env, err := sp1.Envelope(id)
		return err == nil && env.Attempts == 1
	})
	h1.q.Close()
	h1.stop()
	sp1.Close()

	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: upAddr})
	sp2 := testpeer.OpenSpool(t, dir)
	if sp2.Len() != 1 {
		t.Fatalf("reopened spool holds %d messages; want 1", sp2.Len())
	}
	// The backoff is an hour; a restart does not make it due, retry does.
	h2 := startQueue(t, cfg, sp2, Options{})
	if n, err := h2.q.Retry(context.Background(), "all"); err != nil || n != 1 {
		t.Fatalf("Retry(all) = %d, %v", n, err)
	}
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	if m.From != "alarms@plant.example.com" {
		t.Fatalf("upstream got a message from %q; want message %s", m.From, id)
	}
}

// TestQueueOperationsWithoutRun: Retry and Delete work on a queue that
// does not deliver (relay queue with no relay running).
func TestQueueOperationsWithoutRun(t *testing.T) {
	sp := testpeer.OpenSpool(t, t.TempDir())
	keep := queueMessage(t, sp, nil, "a@example.com", "b@example.com")
	drop := queueMessage(t, sp, nil, "a@example.com", "c@example.com")
	for _, id := range []string{keep, drop} {
		env, _ := sp.Envelope(id)
		env.NextAttempt = time.Now().Add(time.Hour)
		if err := sp.Update(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
	q := New(Options{Spool: sp})
	if n, err := q.Retry(context.Background(), keep); n != 1 || err != nil {
		t.Fatalf("Retry(%s) = %d, %v; want 1, nil", keep, n, err)
	}
	if env, _ := sp.Envelope(keep); !env.NextAttempt.IsZero() {
		t.Errorf("after Retry, next attempt %v; want now", env.NextAttempt)
	}
	if err := q.Delete(drop); err != nil {
		t.Fatalf("Delete(%s) = %v", drop, err)
	}
	if _, err := q.Retry(context.Background(), drop); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("Retry of a deleted message = %v; want ErrNotFound", err)
	}
	if envs, _ := q.List(); len(envs) != 1 || envs[0].ID != keep {
		t.Errorf("List() = %v; want only %s", envs, keep)
	}
}

// TestQueueDueWhileClaimedIsNotStranded: a message that falls due while
// an operation holds it for a moment (Retry rewriting its envelope,
// Delete) must still be delivered once the operation lets go. The worker
// that found it claimed used to drop it from the ready list in the "ready"
// state, where neither the timer, nor Retry, nor another worker ever looked
// at it again: it stayed queued until the next restart.
func TestQueueDueWhileClaimedIsNotStranded(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnMail: greylistOnce()})
	sp := testpeer.OpenSpool(t, t.TempDir())
	var skew atomic.Int64 // the queue's clock runs ahead of the spool's by this
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	h := startQueue(t, testConfig(t, u.Addr, slowBackoff...), sp, Options{Now: now})
	q := h.q

	id := h.submit(t, "a@example.com", "b@example.com")
	var it *item
	testpeer.WaitFor(t, "the greylisted attempt", 5*time.Second, func() bool {
		env, err := sp.Envelope(id)
		if err != nil || env.Attempts != 1 {
			return false
		}
		var ok bool
		it, ok = q.hold(env, false) // the worker let go of it
		return ok
	})
	// The message is held (as Retry holds it while it writes the envelope)
	// when it falls due.
	skew.Add(int64(2 * time.Hour))
	q.signal()
	time.Sleep(200 * time.Millisecond) // the timer looks at it now, and leaves it
	if n := len(u.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages while the message was held; want none", n)
	}
	q.unhold(it, false) // without a Retry, the message is due
	q.signal()
	u.WaitMessages(t, 1, 5*time.Second)
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueRetryKeepsDeliveryProgress: Retry("all") rewrites each
// message's envelope to make it due. A message whose delivery attempt ends
// while Retry works through the list must keep what that attempt recorded;
// Retry used to write back the envelope it had listed before, so a
// recipient the upstream had just taken went back to pending and got the
// message a second time.
func TestQueueRetryKeepsDeliveryProgress(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: refuse("busy@example.com", 451, smtp.EnhancedCode{4, 2, 1}, "mailbox busy")})
	sp := testpeer.OpenSpool(t, t.TempDir())

	var (
		mu       sync.Mutex
		armed    bool
		heldID   string
		attempts = map[string]int{}
	)
	held := make(chan struct{})    // closed when the attempt is held
	release := make(chan struct{}) // closed to let it finish
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	events := func(e Event) {
		if e.Kind != EventAttempt {
			return
		}
		mu.Lock()
		attempts[e.ID]++
		hold := armed && heldID == ""
		if hold {
			heldID = e.ID
		}
		mu.Unlock()
		if hold {
			close(held)
			<-release
		}
	}
	h := startQueue(t, testConfig(t, u.Addr, slowBackoff...), sp, Options{Events: events})

	// Many deferred messages, so that Retry("all") takes a while.
	const n = 200
	var first string
	for i := 0; i < n; i++ {
		id := h.submit(t, "a@example.com", "busy@example.com")
		if i == 0 {
			first = id
		}
	}
	testpeer.WaitFor(t, "every message to be deferred", 20*time.Second, func() bool {
		envs, _ := sp.List()
		for _, env := range envs {
			if env.Attempts == 0 {
				return false
			}
		}
		return len(envs) == n
	})

	// The newest message: one recipient taken, one deferred. Its attempt
	// is held before the outcome is recorded.
	mu.Lock()
	armed = true
	mu.Unlock()
	id := h.submit(t, "a@example.com", "ops@example.com", "busy@example.com")
	<-held
	retried := make(chan error, 1)
	go func() { _, err := h.q.Retry(context.Background(), "all"); retried <- err }()
	testpeer.WaitFor(t, "Retry to start", 10*time.Second, func() bool {
		env, err := sp.Envelope(first)
		return err == nil && env.NextAttempt.IsZero()
	})
	unblock() // the attempt records ops@example.com as delivered
	if err := <-retried; err != nil {
		t.Fatalf("Retry(all) = %v", err)
	}
	// The retry made the message due: it is tried again for busy@ only.
	testpeer.WaitFor(t, "the next attempt", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return attempts[id] >= 2
	})
	got := 0
	for _, m := range u.Messages() {
		for _, to := range m.To {
			if to == "ops@example.com" {
				got++
			}
		}
	}
	if got != 1 {
		t.Fatalf("ops@example.com got the message %d times; want once", got)
	}
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Recipients[0].State != spool.Delivered {
		t.Errorf("after Retry, %s is %v; want delivered", env.Recipients[0].Addr, env.Recipients[0].State)
	}
	if !strings.Contains(env.Recipients[1].Reply.Text, "mailbox busy") {
		t.Errorf("after Retry, %s's reply %+v; want the upstream's", env.Recipients[1].Addr, env.Recipients[1].Reply)
	}
}
