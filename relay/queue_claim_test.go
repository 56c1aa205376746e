package relay

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

// startQueueHarness is startHarness with the queue running on sp until
// the test ends.
func startQueueHarness(t *testing.T, cfgText string, sp *spool.Spool, opts Options) *harness {
	t.Helper()
	opts.Spool = sp
	h := startHarness(t, cfgText, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.srv.RunQueue(ctx); close(done) }()
	t.Cleanup(func() {
		h.srv.Close()
		cancel()
		<-done
	})
	return h
}

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

// TestQueueDueWhileClaimedIsNotStranded: a message that falls due while
// someone else holds its claim for a moment (Retry rewriting its envelope,
// Delete) must still be delivered once the claim is released. The worker
// that found it claimed used to drop it from the ready list in the "ready"
// state, where neither the timer, nor Retry, nor another worker ever looked
// at it again: it stayed queued until the next restart.
func TestQueueDueWhileClaimedIsNotStranded(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnMail: greylistOnce()})
	sp := openSpool(t, t.TempDir())
	clock := &fakeClock{now: time.Now()} // the spool stamps arrivals by the real clock
	h := startQueueHarness(t, queueConfig(t, u.Addr, "min_backoff = \"1h\"\nmax_backoff = \"1h\""), sp, Options{Now: clock.Now})
	q := h.srv.Queue()

	id := strings.TrimPrefix(sendOne(t, h.addr, "a@example.com", "b@example.com"), "250 2.0.0 OK queued as ")
	waitFor(t, "the greylisted attempt", 5*time.Second, func() bool {
		env, err := sp.Envelope(id)
		return err == nil && env.Attempts == 1 && sp.Claim(id) // the worker let go of it
	})
	// The claim is held (as Retry holds it while it writes the envelope)
	// when the message falls due.
	clock.Advance(2 * time.Hour)
	q.signal()
	time.Sleep(200 * time.Millisecond) // a worker looks at it and finds it claimed
	sp.Release(id)
	if _, err := q.Retry(context.Background(), id); err != nil {
		t.Fatalf("Retry(%s) = %v", id, err)
	}
	u.WaitMessages(t, 1, 5*time.Second)
	waitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}
