package relay

import (
	"sync"
	"time"

	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/queue"
)

// EventKind names a message event; see queue.EventKind.
type EventKind = queue.EventKind

// Message events, the queue's and those of direct delivery alike; see
// the queue package for what each means.
const (
	EventReceived  = queue.EventReceived
	EventDelivered = queue.EventDelivered
	EventDeferred  = queue.EventDeferred
	EventBounced   = queue.EventBounced
	EventAttempt   = queue.EventAttempt
)

// Event is one message event, for metrics and status pages; see
// queue.Event.
type Event = queue.Event

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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
