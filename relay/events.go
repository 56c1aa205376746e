package relay

import (
	"log/slog"
	"sync"
	"time"

	"github.com/relaymail/relay/oauth"
)

// EventKind names a message event, as the queue's log lines do.
type EventKind string

// Message events. Received, Delivered, Deferred and Bounced are counted once
// per message and event, like the log lines; Attempt is one upstream
// transaction, for latency.
const (
	// EventReceived: a client's message was queued (delivery = "queue"),
	// or handed to the upstream at once (delivery = "direct").
	EventReceived EventKind = "received"
	// EventDelivered: the upstream accepted the message for at least one
	// recipient.
	EventDelivered EventKind = "delivered"
	// EventDeferred: recipients remain after a temporary failure; the
	// queue retries them. In direct mode the client was given a 4xx and
	// retries itself.
	EventDeferred EventKind = "deferred"
	// EventBounced: recipients failed for good (a 5xx, or the message
	// outlived max_lifetime); a bounce goes to the sender. In direct mode
	// the client was given the upstream's 5xx.
	EventBounced EventKind = "bounced"
	// EventAttempt: one transaction with the upstream ended; Duration is
	// how long it took and Err why it failed, if it did.
	EventAttempt EventKind = "attempt"
)

// Event is one message event, for metrics and status pages. It holds no
// message content and no secret.
type Event struct {
	Kind    EventKind
	ID      string // queue ID, or the transaction ID in direct mode
	Profile string
	// Duration is the upstream transaction's duration (EventAttempt).
	Duration time.Duration
	// Err is the failure of an attempt, or why a message was deferred or
	// bounced; "" otherwise.
	Err string
}

// ProfileStats is what the server knows of a profile's recent deliveries,
// queued and direct alike.
type ProfileStats struct {
	LastDelivery time.Time
	LastError    string
	// LastErrorHint is one line on how to fix LastError, for the usual
	// misconfigurations of OAuth2 upstreams (oauth.ReplyHint).
	LastErrorHint string
	LastErrorAt   time.Time
}

// stats keeps ProfileStats by profile.
type stats struct {
	mu sync.Mutex
	m  map[string]*ProfileStats
}

func (st *stats) record(e Event, now time.Time) {
	if e.Kind != EventDelivered && e.Err == "" {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.m == nil {
		st.m = make(map[string]*ProfileStats)
	}
	ps := st.m[e.Profile]
	if ps == nil {
		ps = &ProfileStats{}
		st.m[e.Profile] = ps
	}
	if e.Kind == EventDelivered {
		ps.LastDelivery = now
	}
	if e.Err != "" {
		ps.LastError, ps.LastErrorAt = e.Err, now
		ps.LastErrorHint = oauth.ReplyHint(e.Err)
	}
}

func (st *stats) get(profile string) ProfileStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ps := st.m[profile]; ps != nil {
		return *ps
	}
	return ProfileStats{}
}

// emit records e for Stats and passes it to Options.Events.
func (s *Server) emit(e Event) {
	s.stats.record(e, s.opts.Now())
	if s.opts.Events != nil {
		s.opts.Events(e)
	}
}

// Stats returns what the server knows of a profile's deliveries: the last
// successful one and the last failure.
func (s *Server) Stats(profile string) ProfileStats { return s.stats.get(profile) }

// hintAttr is the log attribute of the hint for an upstream error text,
// or an empty attribute, which log/slog leaves out.
func hintAttr(errText string) slog.Attr {
	if h := oauth.ReplyHint(errText); h != "" {
		return slog.String("hint", h)
	}
	return slog.Attr{}
}
