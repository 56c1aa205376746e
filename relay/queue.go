package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// Schedule is the retry schedule of [queue]: Postfix's by default.
type Schedule struct {
	Min, Max, Lifetime time.Duration
}

func scheduleOf(q config.Queue) Schedule {
	return Schedule{Min: q.MinBackoff.D(), Max: q.MaxBackoff.D(), Lifetime: q.MaxLifetime.D()}
}

// Backoff is the wait after the given number of failed attempts (>= 1):
// Min doubled after each attempt, at most Max, spread by jitter (a factor
// near 1) so that messages deferred together do not retry together. It is
// computed in floating point: an integer-truncated multiplier (a known bug
// in a peer's queue) never grows.
func (s Schedule) Backoff(attempts int, jitter float64) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := float64(s.Min) * math.Pow(2, float64(attempts-1))
	if d > float64(s.Max) || math.IsInf(d, 0) {
		d = float64(s.Max)
	}
	return time.Duration(d * jitter)
}

// queueLinger is how long an idle delivery connection waits for the next
// message of a burst before it closes (Postfix caches connections ~2 s).
const queueLinger = 2 * time.Second

// Queue delivers the spool's messages: per profile at most max_connections
// connections, each carrying one message after another; retries with
// backoff; bounces for permanent failures and expired messages.
type Queue struct {
	srv    *Server
	spool  *spool.Spool
	logger *slog.Logger
	now    func() time.Time

	// abort ends deliveries in progress; Run's context only stops new ones.
	abort       context.Context
	cancelAbort context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopping bool
	items    map[string]*item
	profiles map[string]*profileQueue
	wake     chan struct{}
	workers  sync.WaitGroup
}

type itemState int

const (
	waiting  itemState = iota // until next
	ready                     // in its profile's ready list
	inflight                  // a worker delivers it
)

type item struct {
	id      string
	profile string
	next    time.Time
	state   itemState
}

type profileQueue struct {
	name      string
	ready     []*item
	workers   int
	idle      int
	connected int // workers holding an open connection
	kick      chan struct{}
}

func newQueue(srv *Server, sp *spool.Spool) *Queue {
	q := &Queue{
		srv:      srv,
		spool:    sp,
		logger:   srv.logger.With("component", "queue"),
		now:      srv.opts.Now,
		items:    make(map[string]*item),
		profiles: make(map[string]*profileQueue),
		wake:     make(chan struct{}, 1),
	}
	q.abort, q.cancelAbort = context.WithCancel(context.Background())
	return q
}

// Run delivers queued messages until ctx ends, then waits for the
// deliveries in progress (Close cuts them short). It picks up every message
// the spool holds, so mail queued before a restart goes out.
func (q *Queue) Run(ctx context.Context) {
	envs, _ := q.spool.List()
	q.mu.Lock()
	q.started = true
	for _, env := range envs {
		if _, ok := q.items[env.ID]; !ok {
			q.items[env.ID] = &item{id: env.ID, profile: env.Profile, next: env.NextAttempt}
		}
	}
	q.mu.Unlock()
	q.logger.Info("queue started", "messages", len(envs))

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			q.mu.Lock()
			q.stopping = true
			for _, pq := range q.profiles {
				for i := 0; i < cap(pq.kick); i++ {
					select {
					case pq.kick <- struct{}{}:
					default:
					}
				}
			}
			q.mu.Unlock()
			q.workers.Wait()
			q.logger.Info("queue stopped", "messages", q.spool.Len())
			return
		case <-timer.C:
		case <-q.wake:
		}
		next := q.promote()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(max(next.Sub(q.now()), time.Millisecond))
		}
	}
}

// Close ends deliveries in progress at once; their messages stay queued.
func (q *Queue) Close() { q.cancelAbort() }

// promote moves due messages to their profiles' ready lists and returns
// when the next waiting message is due (zero: none waits).
func (q *Queue) promote() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	var next time.Time
	due := make([]*item, 0)
	for _, it := range q.items {
		if it.state != waiting {
			continue
		}
		if !it.next.After(now) {
			due = append(due, it)
		} else if next.IsZero() || it.next.Before(next) {
			next = it.next
		}
	}
	// Oldest first: IDs sort by arrival.
	sort.Slice(due, func(i, j int) bool { return due[i].id < due[j].id })
	for _, it := range due {
		q.pushLocked(it)
	}
	return next
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Enqueue hands a committed message to the queue for delivery now.
func (q *Queue) Enqueue(env *spool.Envelope) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.items[env.ID]; ok {
		// Run took it from the spool already (it was committed just before
		// Run listed the spool): one item per message, or a second one
		// would go out past the first's claim and backoff.
		return
	}
	it := &item{id: env.ID, profile: env.Profile, next: env.NextAttempt}
	q.items[it.id] = it
	if q.started && !q.stopping && !it.next.After(q.now()) {
		q.pushLocked(it)
	} else {
		q.signal()
	}
}

// pushLocked puts it on its profile's ready list and makes sure a worker
// will take it.
func (q *Queue) pushLocked(it *item) {
	if q.stopping {
		return
	}
	limit := 1
	if p := q.srv.Config().Profile(it.profile); p != nil {
		limit = p.MaxConnections
	}
	pq := q.profiles[it.profile]
	if pq == nil {
		pq = &profileQueue{name: it.profile}
		q.profiles[it.profile] = pq
	}
	if cap(pq.kick) != limit {
		// A reload changed max_connections. Closing the old channel wakes
		// the workers idle on it, which then wait on the new one (only
		// this function and Run send, and always on the current one).
		if pq.kick != nil {
			close(pq.kick)
		}
		pq.kick = make(chan struct{}, limit)
	}
	it.state = ready
	pq.ready = append(pq.ready, it)
	if pq.idle > 0 {
		select {
		case pq.kick <- struct{}{}:
		default:
		}
		return
	}
	if pq.workers < limit {
		pq.workers++
		q.workers.Add(1)
		go q.worker(pq)
	}
}

// take gives a worker the next ready message of its profile, or nil.
func (q *Queue) take(pq *profileQueue) *item {
	q.mu.Lock()
	defer q.mu.Unlock()
	// After Close nothing more is taken: an attempt would fail at once and
	// put the message back, due, for the next one to take.
	for len(pq.ready) > 0 && !q.stopping && q.abort.Err() == nil {
		it := pq.ready[0]
		pq.ready = pq.ready[1:]
		if q.items[it.id] != it || it.state != ready {
			continue // deleted or taken meanwhile
		}
		if !q.claimLocked(it) {
			continue
		}
		it.state = inflight
		return it
	}
	return nil
}

// claimLocked claims the spool message of a ready item. When that fails
// the item leaves the ready list in a state that someone looks at again:
// gone from the spool, it is forgotten; claimed by Retry or Delete for a
// moment, it waits, due, and their Release and signal bring it back.
func (q *Queue) claimLocked(it *item) bool {
	if q.spool.Claim(it.id) {
		return true
	}
	if _, err := q.spool.Envelope(it.id); err != nil {
		delete(q.items, it.id)
	} else {
		it.state = waiting
	}
	return false
}

// idleOrExit waits up to queueLinger for more work. It returns false when
// the worker should end; the worker count is then already decremented. A
// kick that another worker answered first does not end the wait.
func (q *Queue) idleOrExit(pq *profileQueue, linger bool) (more, waited bool) {
	deadline := time.Now().Add(queueLinger)
	for {
		q.mu.Lock()
		if len(pq.ready) > 0 && !q.stopping && q.abort.Err() == nil {
			q.mu.Unlock()
			return true, waited
		}
		remaining := time.Until(deadline)
		if !linger || q.stopping || remaining <= 0 || q.abort.Err() != nil {
			pq.workers--
			q.mu.Unlock()
			return false, waited
		}
		pq.idle++
		kick := pq.kick
		q.mu.Unlock()
		waited = true
		t := time.NewTimer(remaining)
		select {
		case <-kick:
		case <-t.C:
		case <-q.abort.Done():
		}
		t.Stop()
		q.mu.Lock()
		pq.idle--
		q.mu.Unlock()
	}
}

// worker delivers its profile's ready messages over one connection at a
// time, reopening it when it breaks.
func (q *Queue) worker(pq *profileQueue) {
	defer q.workers.Done()
	var d Delivery
	uses := 0      // messages d has carried
	idled := false // d sat idle since its last message
	hangUp := func() {
		if d != nil {
			d.Close()
			d = nil
			q.mu.Lock()
			pq.connected--
			q.mu.Unlock()
		}
	}
	defer hangUp()
	for {
		it := q.take(pq)
		if it == nil {
			more, waited := q.idleOrExit(pq, d != nil)
			if !more {
				return
			}
			idled = idled || waited
			continue
		}
		if d != nil && idled && d.Reset(q.abort) != nil {
			// RSET before reusing a connection that sat idle, as Postfix
			// does with cached connections: a dead one is replaced before
			// a message goes out on it.
			hangUp()
		}
		idled = false
		for {
			if d != nil && !d.Usable() {
				hangUp()
			}
			if d == nil {
				conn, err := q.open(pq.name)
				if err != nil {
					if q.abort.Err() != nil {
						// Close cut the attempt short: the relay stops, the
						// upstream did not fail. The message stays as it was.
						q.release(it, time.Time{})
						break
					}
					if q.handBack(pq, it) {
						// Other connections of the profile work: the
						// upstream refuses one more (Office 365 allows a
						// few per mailbox). They take the message; this
						// worker ends.
						q.logger.Info("no further connection to the upstream; the open ones carry on", "profile", pq.name, "error", err.Error())
						return
					}
					// The upstream, its login or the token is the trouble,
					// not this message: defer every ready message of the
					// profile.
					q.deferProfile(pq, it, err)
					break
				}
				d = conn
				q.mu.Lock()
				pq.connected++
				q.mu.Unlock()
				uses = 0
			}
			uses++
			if !q.deliver(d, it, uses > 1) {
				break
			}
			// The kept connection had died while idle (the server closed
			// it): send again on a new one, without counting an attempt.
			hangUp()
		}
	}
}

// handBack returns it, untried, to the front of the ready list when
// another worker of the profile holds a working connection, and ends this
// worker's count. It reports whether it did.
func (q *Queue) handBack(pq *profileQueue, it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if pq.connected == 0 || q.items[it.id] != it {
		return false
	}
	it.state = ready
	pq.ready = append([]*item{it}, pq.ready...)
	pq.workers--
	q.spool.Release(it.id)
	if pq.idle > 0 {
		select {
		case pq.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// stale reports whether err means that a kept connection died while idle:
// no reply at all to the first command of a transaction.
func stale(err error) bool {
	var ue *upstream.Error
	// RFC 5321 §3.8: a 421 is the server closing the channel, too.
	return errors.As(err, &ue) && (ue.Code == 0 || ue.Code == 421) && (ue.Step == upstream.StepMail || ue.Step == upstream.StepReset)
}

func (q *Queue) open(profile string) (Delivery, error) {
	t := q.srv.Transport(profile)
	if t == nil {
		return nil, fmt.Errorf("profile %q is not in the configuration; the message waits until it is", profile)
	}
	return t.Open(q.abort)
}

// deferProfile defers it and every message still ready for the profile
// after a connection could not be opened.
func (q *Queue) deferProfile(pq *profileQueue, it *item, err error) {
	q.mu.Lock()
	batch := []*item{it}
	for _, r := range pq.ready {
		if q.items[r.id] == r && r.state == ready && q.claimLocked(r) {
			r.state = inflight
			batch = append(batch, r)
		}
	}
	pq.ready = pq.ready[:0]
	q.mu.Unlock()
	for _, b := range batch {
		env, eerr := q.spool.Envelope(b.id)
		if eerr != nil {
			q.forget(b)
			continue
		}
		env.Attempts++
		for i := range env.Recipients {
			if env.Recipients[i].State == spool.Pending {
				env.Recipients[i].Reply = err.Error()
			}
		}
		q.finish(env, b, err, nil)
	}
}

// deliver sends one message over d and records the outcome. On a reused
// connection that turns out dead it records nothing and returns true: send
// again on a new connection.
func (q *Queue) deliver(d Delivery, it *item, reused bool) (again bool) {
	env, err := q.spool.Envelope(it.id)
	if err != nil {
		q.forget(it)
		return false
	}
	var pending []int
	var to []string
	for i, r := range env.Recipients {
		if r.State == spool.Pending {
			pending = append(pending, i)
			to = append(to, r.Addr)
		}
	}
	if len(pending) == 0 {
		q.finish(env, it, nil, nil)
		return false
	}
	body, err := q.spool.Open(it.id)
	if err != nil {
		q.finish(env, it, fmt.Errorf("open queued message: %w", err), nil)
		return false
	}
	start := q.now()
	msg := &upstream.Message{From: env.From, To: to, Body: body, Size: env.Size, UTF8: needsSMTPUTF8(env.From, to), BodyType: env.BodyType}
	res, err := d.Send(q.abort, msg)
	body.Close()
	if err != nil && q.abort.Err() != nil {
		// Shut down mid-delivery: the message stays queued as it was and
		// goes out again after the restart (at least once, never lost).
		// A transaction that ended with the upstream's answer is recorded.
		q.release(it, time.Time{})
		return false
	}
	if reused && stale(err) {
		return true
	}
	env.Attempts++
	var newlyFailed []spool.Recipient
	if err != nil {
		var ue *upstream.Error
		permanent := errors.As(err, &ue) && !ue.Temporary
		for _, i := range pending {
			r := &env.Recipients[i]
			r.Reply = err.Error()
			if permanent {
				r.State = spool.Failed
				newlyFailed = append(newlyFailed, *r)
			}
		}
	} else {
		for k, i := range pending {
			r := &env.Recipients[i]
			var ue *upstream.Error
			switch rerr := res.Rcpts[k]; {
			case rerr == nil:
				r.State, r.Reply = spool.Delivered, res.Reply
			case errors.As(rerr, &ue) && !ue.Temporary:
				r.State, r.Reply = spool.Failed, rerr.Error()
				newlyFailed = append(newlyFailed, *r)
			default:
				r.Reply = rerr.Error()
				if err == nil {
					err = rerr
				}
			}
		}
	}
	q.logOutcome(env, res, err, pending, start)
	q.finish(env, it, err, newlyFailed)
	return false
}

// needsSMTPUTF8 reports whether an envelope has a non-ASCII address, which
// only SMTPUTF8 lets through (RFC 6531 §3.4). The spool does not store the
// client's parameter; it accepted such addresses only with it (address.go).
func needsSMTPUTF8(from string, to []string) bool {
	for _, a := range append([]string{from}, to...) {
		for i := 0; i < len(a); i++ {
			if a[i] >= utf8.RuneSelf {
				return true
			}
		}
	}
	return false
}

// logOutcome writes one line per message event, Postfix-style.
func (q *Queue) logOutcome(env *spool.Envelope, res *upstream.Result, err error, pending []int, start time.Time) {
	attrs := []any{"id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", len(pending), "size", env.Size,
		"attempts", env.Attempts, "duration", q.now().Sub(start).Round(time.Millisecond), "delay", q.now().Sub(env.Arrived).Round(time.Second)}
	delivered := 0
	for _, i := range pending {
		if env.Recipients[i].State == spool.Delivered {
			delivered++
		}
	}
	q.srv.emit(Event{Kind: EventAttempt, ID: env.ID, Profile: env.Profile, Duration: q.now().Sub(start), Err: errString(err)})
	if delivered > 0 {
		reply := ""
		if res != nil {
			reply = res.Reply
		}
		q.logger.Info("delivered", append(attrs, "delivered", delivered, "reply", reply)...)
		q.srv.emit(Event{Kind: EventDelivered, ID: env.ID, Profile: env.Profile})
	}
}

// finish records an attempt: removes a message with nothing pending,
// bounces newly failed recipients, expires what outlived max_lifetime, and
// schedules the next attempt for the rest.
func (q *Queue) finish(env *spool.Envelope, it *item, err error, newlyFailed []spool.Recipient) {
	now := q.now()
	sched := scheduleOf(q.srv.Config().Queue)
	pending := 0
	for _, r := range env.Recipients {
		if r.State == spool.Pending {
			pending++
		}
	}
	// Mail of a profile no longer configured waits for it (or for relay
	// queue delete): a bounce would have no profile to go through.
	if pending > 0 && now.Sub(env.Arrived) >= sched.Lifetime && q.srv.Config().Profile(env.Profile) != nil {
		for i := range env.Recipients {
			r := &env.Recipients[i]
			if r.State == spool.Pending {
				r.State = spool.Failed
				if !strings.HasPrefix(r.Reply, "gave up after ") { // once, should the bounce have to wait
					r.Reply = fmt.Sprintf("gave up after %d attempts over %s: %s", env.Attempts, now.Sub(env.Arrived).Round(time.Minute), r.Reply)
				}
				newlyFailed = append(newlyFailed, *r)
			}
		}
		q.logger.Warn("expired", "id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", pending, "size", env.Size, "attempts", env.Attempts, "error", errString(err))
		pending = 0
	}
	if len(newlyFailed) > 0 {
		if berr := q.bounce(env, newlyFailed, now); berr != nil {
			// Only the bounce tells the sender: without it the failed
			// recipients stay pending, to fail and bounce again later.
			for i := range env.Recipients {
				r := &env.Recipients[i]
				if r.State == spool.Failed && slices.ContainsFunc(newlyFailed, func(f spool.Recipient) bool { return f.Addr == r.Addr }) {
					r.State = spool.Pending
					pending++
				}
			}
			if err == nil {
				err = fmt.Errorf("queue the bounce: %w", berr)
			}
		}
	}
	if pending == 0 {
		if rerr := q.spool.Remove(env.ID); rerr != nil {
			q.logger.Error("cannot remove a finished message from the spool; it may be delivered again", "id", env.ID, "error", rerr)
		}
		q.forget(it)
		return
	}
	env.NextAttempt = now.Add(sched.Backoff(env.Attempts, 0.9+0.2*rand.Float64()))
	env.LastError = errString(err)
	// Not cut short by Close: the attempt happened, and the old envelope
	// would have it made again.
	if uerr := q.spool.Update(context.WithoutCancel(q.abort), env); uerr != nil {
		// The old envelope stays: the message is retried sooner, with
		// recipients delivered meanwhile maybe delivered again.
		q.logger.Error("cannot update a queued message", "id", env.ID, "error", uerr)
	}
	q.logger.Info("deferred", "id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", pending, "size", env.Size, "attempts", env.Attempts,
		"next_attempt", env.NextAttempt.Format(time.RFC3339), "error", env.LastError)
	q.srv.emit(Event{Kind: EventDeferred, ID: env.ID, Profile: env.Profile, Err: env.LastError})
	q.release(it, env.NextAttempt)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// release ends a delivery attempt that leaves the message queued.
func (q *Queue) release(it *item, next time.Time) {
	q.mu.Lock()
	if q.items[it.id] == it {
		it.state, it.next = waiting, next
	}
	q.mu.Unlock()
	q.spool.Release(it.id)
	q.signal()
}

func (q *Queue) forget(it *item) {
	q.mu.Lock()
	if q.items[it.id] == it {
		delete(q.items, it.id)
	}
	q.mu.Unlock()
	q.spool.Release(it.id)
}

// Stats returns what the server knows of a profile's deliveries (see
// Server.Stats).
func (q *Queue) Stats(profile string) ProfileStats { return q.srv.Stats(profile) }

// List returns every queued message, oldest first.
func (q *Queue) List() ([]*spool.Envelope, error) { return q.spool.List() }

// Len counts the queued messages of every profile.
func (q *Queue) Len() int { return q.spool.Len() }

// Oldest returns when the oldest queued message arrived, or the zero time
// when the queue is empty.
func (q *Queue) Oldest() time.Time { return q.spool.Oldest() }

// Depth counts the queued messages of a profile.
func (q *Queue) Depth(profile string) int {
	envs, _ := q.spool.List()
	n := 0
	for _, e := range envs {
		if e.Profile == profile {
			n++
		}
	}
	return n
}

// ErrInDelivery is returned by Delete for a message being delivered.
var ErrInDelivery = errors.New("the message is being delivered right now; try again in a moment")

// Retry makes queued messages due now: one by ID, or all with "all". It
// returns how many it rescheduled.
func (q *Queue) Retry(ctx context.Context, id string) (int, error) {
	envs, err := q.spool.List()
	if err != nil {
		return 0, err
	}
	// Also after an error: a worker may have found a message claimed here.
	defer q.signal()
	n := 0
	for _, env := range envs {
		if id != "all" && env.ID != id {
			continue
		}
		n++
		q.mu.Lock()
		it := q.items[env.ID]
		busy := it != nil && it.state != waiting
		q.mu.Unlock()
		if busy || !q.spool.Claim(env.ID) {
			continue // ready or being delivered already
		}
		// The listed envelope may predate an attempt that ended since:
		// change the current one, or that attempt's outcome is lost.
		cur, err := q.spool.Envelope(env.ID)
		if err == nil {
			cur.NextAttempt = time.Time{}
			err = q.spool.Update(ctx, cur)
		}
		q.spool.Release(env.ID)
		if errors.Is(err, spool.ErrNotFound) {
			continue // delivered or deleted meanwhile
		}
		if err != nil {
			return n, err
		}
		q.mu.Lock()
		if it := q.items[env.ID]; it != nil && it.state == waiting {
			it.next = time.Time{}
		}
		q.mu.Unlock()
	}
	if id != "all" && n == 0 {
		return 0, fmt.Errorf("no queued message %s: %w", id, spool.ErrNotFound)
	}
	return n, nil
}

// Delete removes a queued message without delivering it.
func (q *Queue) Delete(id string) error {
	if !q.spool.Claim(id) {
		if _, err := q.spool.Envelope(id); err != nil {
			return err
		}
		return ErrInDelivery
	}
	if err := q.spool.Remove(id); err != nil {
		q.spool.Release(id)
		q.signal() // a worker may have found it claimed
		return err
	}
	q.mu.Lock()
	delete(q.items, id)
	q.mu.Unlock()
	q.logger.Info("deleted", "id", id)
	return nil
}
