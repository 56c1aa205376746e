package relay

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// eventLog collects a server's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// kinds lists the kinds of the events of profile, in order.
func (l *eventLog) kinds(profile string) []EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []EventKind
	for _, e := range l.events {
		if e.Profile == profile {
			out = append(out, e.Kind)
		}
	}
	return out
}

func (l *eventLog) find(kind EventKind) (Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind {
			return e, true
		}
	}
	return Event{}, false
}

// TestEventsQueue: a queued message that is deferred once (451) and then
// delivered yields received, attempt, deferred, attempt, delivered, and
// the server's stats show the delivery and the 451.
func TestEventsQueue(t *testing.T) {
	var mu sync.Mutex
	n := 0
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnMail: func(string) error {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		}
		return nil
	}})
	var log eventLog
	h := startHarness(t, queueConfig(t, u.Addr), Options{Spool: testpeer.OpenSpool(t, t.TempDir()), Events: log.add})
	addr, srv := h.addr, h.srv
	id := strings.TrimPrefix(sendOne(t, addr, "alarms@plant.example.com", "ops@example.com"), "250 2.0.0 OK queued as ")
	u.WaitMessages(t, 1, 10*time.Second)
	want := []EventKind{EventReceived, EventAttempt, EventDeferred, EventAttempt, EventDelivered}
	testpeer.WaitFor(t, "the delivered event", 5*time.Second, func() bool { return len(log.kinds("up")) >= len(want) })
	if got := log.kinds("up"); !slices.Equal(got, want) {
		t.Fatalf("events = %v; want %v", got, want)
	}
	for _, e := range log.events {
		if e.ID != id {
			t.Errorf("event %v has ID %q; want %q", e.Kind, e.ID, id)
		}
	}
	if e, _ := log.find(EventAttempt); e.Duration <= 0 || !strings.Contains(e.Err, "451") {
		t.Errorf("first attempt = %+v; want a duration and the 451", e)
	}
	st := srv.Stats("up")
	if st.LastDelivery.IsZero() || !strings.Contains(st.LastError, "greylisted") {
		t.Errorf("Stats(up) = %+v; want a last delivery and the 451 as last error", st)
	}
}

// TestEventsBounce: a 550 bounces the message: received, attempt, bounced.
func TestEventsBounce(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	var log eventLog
	addr := startHarness(t, queueConfig(t, u.Addr), Options{Spool: testpeer.OpenSpool(t, t.TempDir()), Events: log.add}).addr
	sendOne(t, addr, "alarms@plant.example.com", "gone@example.com")
	testpeer.WaitFor(t, "the bounced event", 5*time.Second, func() bool { _, ok := log.find(EventBounced); return ok })
	if got, want := log.kinds("up")[:3], []EventKind{EventReceived, EventAttempt, EventBounced}; !slices.Equal(got, want) {
		t.Fatalf("events = %v; want %v first", got, want)
	}
	if e, _ := log.find(EventBounced); !strings.Contains(e.Err, "no such user") {
		t.Errorf("bounced event = %+v; want the 550's text", e)
	}
}

// TestEventsDirect: a direct-mode profile reports received, attempt and
// delivered, and a refused message as bounced (the client got the 5xx).
func TestEventsDirect(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnData: func(m testpeer.Message) error {
		if strings.Contains(string(m.Data), "virus") {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused"}
		}
		return nil
	}})
	host, port, _ := net.SplitHostPort(u.Addr)
	var log eventLog
	h := startHarness(t, fmt.Sprintf(`
[server]
default_profile = "direct"
[[profiles]]
name = "direct"
hostname = %q
port = %s
delivery = "direct"
`, host, port), Options{Events: log.add})
	addr, srv := h.addr, h.srv
	sendOne(t, addr, "alarms@plant.example.com", "ops@example.com")
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<alarms@plant.example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	if code, last := c.data("Subject: virus\r\n\r\nvirus\r\n"); code != 554 {
		t.Fatalf("DATA → %q; want 554", last)
	}
	want := []EventKind{EventReceived, EventAttempt, EventDelivered, EventReceived, EventAttempt, EventBounced}
	if got := log.kinds("direct"); !slices.Equal(got, want) {
		t.Fatalf("events = %v; want %v", got, want)
	}
	if st := srv.Stats("direct"); st.LastDelivery.IsZero() || !strings.Contains(st.LastError, "message refused") {
		t.Errorf("Stats(direct) = %+v; want a last delivery and the 554 as last error", st)
	}
}
