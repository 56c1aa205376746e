package queue

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// submitBurst queues n messages at once, each to its own recipient.
func (h *harness) submitBurst(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		h.submit(t, "a@example.com", "b"+strconv.Itoa(i)+"@example.com")
	}
}

func TestQueueBurstSharesConnections(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startQueue(t, testConfig(t, u.Addr), testpeer.OpenSpool(t, t.TempDir()), Options{})
	const n = 30
	h.submitBurst(t, n)
	u.WaitMessages(t, n, 10*time.Second)
	if s := u.Sessions(); s > 2 {
		t.Fatalf("upstream saw %d connections for a burst; want at most max_connections = 2", s)
	}
}

// TestQueueKeptConnectionDiedWhileIdle: when the upstream closed a kept
// connection, the next message goes out on a new one at once instead of
// waiting for a retry.
func TestQueueKeptConnectionDiedWhileIdle(t *testing.T) {
	u1 := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startQueue(t, testConfig(t, u1.Addr, slowBackoff...), testpeer.OpenSpool(t, t.TempDir()), Options{})
	h.submit(t, "a@example.com", "b@example.com")
	u1.WaitMessages(t, 1, 5*time.Second)
	u1.Close() // drops the connection the queue keeps for the next message
	u2 := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: u1.Addr})
	h.submit(t, "a@example.com", "c@example.com")
	u2.WaitMessages(t, 1, 5*time.Second)
}

// TestQueueUpstreamRefusesExtraConnections: when the upstream takes fewer
// connections than max_connections (421 to the rest), the open ones carry
// the burst; nothing is deferred.
func TestQueueUpstreamRefusesExtraConnections(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{MaxConns: 1})
	cfg := strings.Replace(testConfig(t, u.Addr, slowBackoff...), "max_connections = 2", "max_connections = 4", 1)
	h := startQueue(t, cfg, testpeer.OpenSpool(t, t.TempDir()), Options{})
	const n = 20
	h.submitBurst(t, n)
	// With min_backoff an hour, a deferred message would not arrive.
	u.WaitMessages(t, n, 15*time.Second)
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
	sp := testpeer.OpenSpool(t, t.TempDir())
	id := queueMessage(t, sp, nil, "a@example.com", "b@example.com")
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	h := startQueue(t, testConfig(t, u.Addr, slowBackoff...), sp, Options{})
	<-inData // the queue picked the message up from the spool and delivers it
	h.q.Enqueue(env)
	unblock()
	testpeer.WaitFor(t, "the deferral", 5*time.Second, func() bool {
		e, err := sp.Envelope(id)
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
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, ln.Addr().String(), `max_lifetime = "300ms"`), sp, Options{})
	id := h.submit(t, "a@example.com", "b@example.com")
	time.Sleep(600 * time.Millisecond) // opening; smtp_timeout is 2 s
	h.q.Close()                        // cut deliveries short, as on SIGTERM after the grace period
	h.stop()
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
	cfg := testConfig(t, u.Addr)
	h := startQueue(t, cfg, testpeer.OpenSpool(t, t.TempDir()), Options{})
	h.submit(t, "a@example.com", "b@example.com")
	u.WaitMessages(t, 1, 5*time.Second) // a worker now lingers with its connection
	h.profiles.reload(t, strings.Replace(cfg, "max_connections = 2", "max_connections = 3", 1))
	start := time.Now()
	h.submit(t, "a@example.com", "c@example.com")
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
	h := startQueue(t, testConfig(t, u.Addr), testpeer.OpenSpool(t, t.TempDir()), Options{})
	h.submit(t, "jürgen@plant.example.com", "opérateur@example.com")
	m := u.WaitMessages(t, 1, 5*time.Second)[0]
	if m.From != "jürgen@plant.example.com" || len(m.To) != 1 || m.To[0] != "opérateur@example.com" || !m.UTF8 {
		t.Fatalf("upstream got from %q to %q, SMTPUTF8 %v; want the message with SMTPUTF8", m.From, m.To, m.UTF8)
	}
}

// closeAfterSend is a Conn whose Send calls close once the upstream has
// answered: Close of the queue lands just after a message went out.
type closeAfterSend struct {
	Conn
	close func()
}

func (c closeAfterSend) Send(ctx context.Context, msg *upstream.Message) (*upstream.Result, error) {
	res, err := c.Conn.Send(ctx, msg)
	c.close()
	return res, err
}

// TestQueueCloseAfterAcceptedKeepsOutcome: when Close comes after the
// upstream accepted a message, the delivery is recorded; the message used
// to be left queued as if cut short, and was sent again after the restart.
func TestQueueCloseAfterAcceptedKeepsOutcome(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := newHarness(t, testConfig(t, u.Addr), sp, Options{})
	h.profiles.wrap = func(c Conn) Conn { return closeAfterSend{c, h.q.Close} }
	h.run()
	id := h.submit(t, "a@example.com", "b@example.com")
	u.WaitMessages(t, 1, 5*time.Second)
	h.stop()
	if env, err := sp.Envelope(id); err == nil {
		t.Fatalf("the upstream accepted %s, and it is still queued (%d attempts, recipient %v): it would go out again", id, env.Attempts, env.Recipients[0].State)
	}
}
