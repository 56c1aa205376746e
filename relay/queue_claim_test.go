package relay

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
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

// TestQueueRetryKeepsDeliveryProgress: Retry("all") rewrites each
// message's envelope to make it due. A message whose delivery attempt ends
// while Retry works through the list must keep what that attempt recorded;
// Retry used to write back the envelope it had listed before, so a
// recipient the upstream had just taken went back to pending and got the
// message a second time.
func TestQueueRetryKeepsDeliveryProgress(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to == "busy@example.com" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "mailbox busy"}
		}
		return nil
	}})
	sp := openSpool(t, t.TempDir())

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
	h := startQueueHarness(t, queueConfig(t, u.Addr, "min_backoff = \"1h\"\nmax_backoff = \"1h\""), sp, Options{Events: events})

	// Many deferred messages, so that Retry("all") takes a while.
	const n = 200
	c := dial(t, h.addr)
	c.ehlo()
	var first string
	for i := 0; i < n; i++ {
		c.must("MAIL FROM:<a@example.com>", 250, "")
		c.must("RCPT TO:<busy@example.com>", 250, "")
		code, last := c.data(msgBody)
		if code != 250 {
			t.Fatalf("DATA → %q", last)
		}
		if i == 0 {
			first = strings.TrimPrefix(last, "250 2.0.0 OK queued as ")
		}
	}
	c.cmd("QUIT")
	waitFor(t, "every message to be deferred", 20*time.Second, func() bool {
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
	id := strings.TrimPrefix(sendOne(t, h.addr, "a@example.com", "ops@example.com", "busy@example.com"), "250 2.0.0 OK queued as ")
	<-held
	retried := make(chan error, 1)
	go func() { _, err := h.srv.Queue().Retry(context.Background(), "all"); retried <- err }()
	waitFor(t, "Retry to start", 10*time.Second, func() bool {
		env, err := sp.Envelope(first)
		return err == nil && env.NextAttempt.IsZero()
	})
	unblock() // the attempt records ops@example.com as delivered
	if err := <-retried; err != nil {
		t.Fatalf("Retry(all) = %v", err)
	}
	// The retry made the message due: it is tried again for busy@ only.
	waitFor(t, "the next attempt", 10*time.Second, func() bool {
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
}

// TestQueueEnqueueOfKnownMessage: a message the queue already holds (a
// session's Enqueue can come after Run listed the spool at start) keeps
// its one item. Enqueue used to replace the item, so the message had two:
// the second went out as soon as the first attempt ended, ignoring its
// backoff (and, before claims were checked on the way out, stayed stuck).
func TestQueueEnqueueOfKnownMessage(t *testing.T) {
	var mu sync.Mutex
	attempts := 0
	inData := make(chan struct{}, 1)
	proceed := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(proceed) }) }
	t.Cleanup(unblock)
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		OnMail: func(string) error {
			mu.Lock()
			attempts++
			mu.Unlock()
			return nil
		},
		OnData: func(testpeer.Message) error {
			select {
			case inData <- struct{}{}:
			default:
			}
			<-proceed
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		},
	})
	sp := openSpool(t, t.TempDir())
	env := &spool.Envelope{Profile: "up", From: "a@example.com", Recipients: []spool.Recipient{{Addr: "b@example.com"}}}
	w, err := sp.Create(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msgBody))
	if _, err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := startQueueHarness(t, queueConfig(t, u.Addr, "min_backoff = \"1h\"\nmax_backoff = \"1h\""), sp, Options{})
	<-inData // the queue picked the message up from the spool and delivers it
	h.srv.Queue().Enqueue(env)
	unblock()
	waitFor(t, "the deferral", 5*time.Second, func() bool {
		e, err := sp.Envelope(env.ID)
		return err == nil && e.Attempts >= 1
	})
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	if attempts != 1 {
		t.Fatalf("upstream saw %d attempts within a second of a 451 with a backoff of 1h; want 1", attempts)
	}
}

// TestQueueCloseDuringOpenRecordsNothing: Close cuts short a connection
// that is still being opened. That is the relay stopping, not the
// upstream failing: the message stays queued as it was. It used to be
// handled like an upstream failure (deferProfile) with the queue's
// cancelled context, so an attempt was counted, and a message past
// max_lifetime was removed while its bounce could not be written: neither
// delivered nor bounced.
func TestQueueCloseDuringOpenRecordsNothing(t *testing.T) {
	// An upstream that accepts connections but never greets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sp := openSpool(t, t.TempDir())
	h := startHarness(t, queueConfig(t, ln.Addr().String(), `max_lifetime = "300ms"`), Options{Spool: sp})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.srv.RunQueue(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	id := strings.TrimPrefix(sendOne(t, h.addr, "a@example.com", "b@example.com"), "250 2.0.0 OK queued as ")
	time.Sleep(600 * time.Millisecond) // opening; smtp_timeout is 2 s
	cancel()                           // stop, as on SIGTERM ...
	h.srv.Queue().Close()              // ... and cut deliveries short
	<-done
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatalf("after Close during a connection attempt, the message is gone from the spool (%v); want it queued", err)
	}
	if env.Attempts != 0 || env.Recipients[0].State != spool.Pending {
		t.Errorf("after Close during a connection attempt: attempts %d, recipient %v; want 0, pending", env.Attempts, env.Recipients[0].State)
	}
}

// TestQueueReloadMaxConnectionsNoStall: a reload that changes a profile's
// max_connections does not hold back the next messages. Idle workers
// waited for a wake-up on the channel of the old size, which nobody sent
// on any more, and took new messages only when their linger ran out.
func TestQueueReloadMaxConnectionsNoStall(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := openSpool(t, t.TempDir())
	cfgText := queueConfig(t, u.Addr, "")
	h := startQueueHarness(t, cfgText, sp, Options{})
	sendOne(t, h.addr, "a@example.com", "b@example.com")
	u.WaitMessages(t, 1, 5*time.Second) // a worker now lingers with its connection
	cfg, err := config.Parse("test.toml", []byte(strings.Replace(cfgText, "max_connections = 2", "max_connections = 3", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sendOne(t, h.addr, "a@example.com", "c@example.com")
	u.WaitMessages(t, 2, 5*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("after a reload of max_connections, a message took %v to go out; want it at once", d)
	}
}

// TestQueueKeepsSMTPUTF8: a queued message whose envelope needs SMTPUTF8
// (RFC 6531) is sent upstream with it. The queue sent MAIL without the
// parameter, so an upstream refused the non-ASCII address with 553 5.6.7
// (RFC 6531 §3.5) and the message bounced.
func TestQueueKeepsSMTPUTF8(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := openSpool(t, t.TempDir())
	h := startQueueHarness(t, queueConfig(t, u.Addr, ""), sp, Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<jürgen@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<opérateur@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q; want 250", last)
	}
	c.cmd("QUIT")
	m := u.WaitMessages(t, 1, 5*time.Second)[0]
	if m.From != "jürgen@plant.example.com" || len(m.To) != 1 || m.To[0] != "opérateur@example.com" || !m.UTF8 {
		t.Fatalf("upstream got from %q to %q, SMTPUTF8 %v; want the message with SMTPUTF8", m.From, m.To, m.UTF8)
	}
}

// closeAfterSend is a Delivery whose Send calls close once the upstream
// has answered: Close of the queue lands just after a message went out.
type closeAfterSend struct {
	Delivery
	close func()
}

func (d closeAfterSend) Send(ctx context.Context, msg *upstream.Message) (*upstream.Result, error) {
	res, err := d.Delivery.Send(ctx, msg)
	d.close()
	return res, err
}

type closeAfterSendTransport struct {
	Transport
	close func()
}

func (t closeAfterSendTransport) Open(ctx context.Context) (Delivery, error) {
	d, err := t.Transport.Open(ctx)
	if err != nil {
		return nil, err
	}
	return closeAfterSend{d, t.close}, nil
}

// TestQueueCloseAfterAcceptedKeepsOutcome: when Close comes after the
// upstream accepted a message, the delivery is recorded; the message used
// to be left queued as if cut short, and was sent again after the restart.
func TestQueueCloseAfterAcceptedKeepsOutcome(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := openSpool(t, t.TempDir())
	cfg, err := config.Parse("test.toml", []byte(queueConfig(t, u.Addr, "")))
	if err != nil {
		t.Fatal(err)
	}
	var srv *Server
	srv, err = NewServer(cfg, Options{
		Spool: sp,
		Transports: func(p *config.Profile) (Transport, error) {
			s, err := upstream.New(p, upstream.Options{})
			if err != nil {
				return nil, err
			}
			return closeAfterSendTransport{SenderTransport(s), func() { srv.Queue().Close() }}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.RunQueue(ctx); close(done) }()
	t.Cleanup(func() { srv.Close(); cancel(); <-done })

	id := strings.TrimPrefix(sendOne(t, ln.Addr().String(), "a@example.com", "b@example.com"), "250 2.0.0 OK queued as ")
	u.WaitMessages(t, 1, 5*time.Second)
	cancel()
	<-done
	if env, err := sp.Envelope(id); err == nil {
		t.Fatalf("the upstream accepted %s, and it is still queued (%d attempts, recipient %v): it would go out again", id, env.Attempts, env.Recipients[0].State)
	}
}
