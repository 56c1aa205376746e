// Package queue delivers the messages of relay's spool: it owns which
// message is being delivered (claims), when each is tried next (backoff,
// jitter, max_lifetime), the attempts over a profile's connections, each
// recipient's outcome, and the bounces (RFC 3464) for those that fail. The
// spool only stores messages; relay hands the queue each message it
// commits (Enqueue) and gives it the profiles' connections (Profiles).
//
// The queue's operations (List, Retry, Delete) are what the admin pages
// and relay queue steer it with.
package queue

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// Profiles is what the queue needs of the running relay: the configuration
// in effect, which a reload replaces, and connections to the profiles'
// upstreams.
type Profiles interface {
	// Config returns the configuration in effect: the [queue] schedule,
	// each profile's max_connections, the hostname bounces name.
	Config() *config.Config
	// Open opens a connection to the named profile's upstream (or
	// Maildir). ctx ends when the queue closes.
	Open(ctx context.Context, profile string) (Conn, error)
}

// Conn is one open connection of a profile: it carries one message after
// another and is not safe for concurrent use. *upstream.Conn is one.
type Conn interface {
	// Send is a whole transaction, with an outcome per recipient.
	Send(ctx context.Context, msg *upstream.Message) (*upstream.Result, error)
	// Reset abandons a transaction; on a connection that sat idle it also
	// checks that the server is still there.
	Reset(ctx context.Context) error
	// Usable reports whether another message may follow.
	Usable() bool
	Close() error
}

// Options are a Queue's settings.
type Options struct {
	// Spool holds the messages; required.
	Spool *spool.Spool
	// Profiles gives the configuration and the connections; required by
	// Run, not by the operations.
	Profiles Profiles
	// Logger gets one line per message event; nil: discarded.
	Logger *slog.Logger
	// Now is the clock of the schedule; nil: time.Now.
	Now func() time.Time
	// Events, if set, is called with every message event, synchronously:
	// it must not block for long.
	Events func(Event)
}

// linger is how long an idle delivery connection waits for the next
// message of a burst before it closes (Postfix caches connections ~2 s).
const linger = 2 * time.Second

// Queue delivers the spool's messages: per profile at most max_connections
// connections, each carrying one message after another; retries with
// backoff; bounces for permanent failures and expired messages.
type Queue struct {
	spool    *spool.Spool
	profiles Profiles
	logger   *slog.Logger
	now      func() time.Time
	events   func(Event)

	// abort ends deliveries in progress; Run's context only stops new ones.
	abort       context.Context
	cancelAbort context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopping bool
	items    map[string]*item // every message the queue knows, by ID
	lanes    map[string]*lane // by profile
	wake     chan struct{}
	workers  sync.WaitGroup
}

type itemState int

const (
	waiting  itemState = iota // until next
	ready                     // in its profile's ready list
	inflight                  // a worker delivers it
	held                      // Retry or Delete works on it
)

// item is a queued message as the queue schedules it. Its state is the
// one claim on the message: only the holder of an inflight or held item
// writes its envelope or removes it.
type item struct {
	id      string
	profile string
	next    time.Time
	state   itemState
}

// lane is the deliveries of one profile.
type lane struct {
	name      string
	ready     []*item
	workers   int
	idle      int
	connected int // workers holding an open connection
	opening   int // workers opening a connection right now
	kick      chan struct{}
}

// New makes a queue over opts.Spool. Run starts the deliveries; the
// operations work without them.
func New(opts Options) *Queue {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Events == nil {
		opts.Events = func(Event) {}
	}
	q := &Queue{
		spool:    opts.Spool,
		profiles: opts.Profiles,
		logger:   opts.Logger.With("component", "queue"),
		now:      opts.Now,
		events:   opts.Events,
		items:    make(map[string]*item),
		lanes:    make(map[string]*lane),
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
			for _, l := range q.lanes {
				for i := 0; i < cap(l.kick); i++ {
					select {
					case l.kick <- struct{}{}:
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

// Enqueue hands a message just committed to the spool to the queue, for
// delivery at env.NextAttempt (zero: now).
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
	if p := q.profiles.Config().Profile(it.profile); p != nil {
		limit = p.MaxConnections
	}
	l := q.lanes[it.profile]
	if l == nil {
		l = &lane{name: it.profile}
		q.lanes[it.profile] = l
	}
	if cap(l.kick) != limit {
		// A reload changed max_connections. Closing the old channel wakes
		// the workers idle on it, which then wait on the new one (only
		// this function and Run send, and always on the current one).
		if l.kick != nil {
			close(l.kick)
		}
		l.kick = make(chan struct{}, limit)
	}
	it.state = ready
	l.ready = append(l.ready, it)
	if l.idle > 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
		return
	}
	if l.workers < limit {
		l.workers++
		q.workers.Add(1)
		go q.worker(l)
	}
}

// release ends a delivery attempt or an operation that leaves the message
// queued, due at next.
func (q *Queue) release(it *item, next time.Time) {
	q.mu.Lock()
	if q.items[it.id] == it {
		it.state, it.next = waiting, next
	}
	q.mu.Unlock()
	q.signal()
}

// forget drops the item of a message that left the spool.
func (q *Queue) forget(it *item) {
	q.mu.Lock()
	if q.items[it.id] == it {
		delete(q.items, it.id)
	}
	q.mu.Unlock()
}
