package queue

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

const msgBody = "From: alarms@plant.example.com\r\nTo: ops@example.com\r\nSubject: pump 3\r\n\r\nPump 3 stopped.\r\n"

// testProfiles is what relay gives a queue: a configuration that a test
// replaces as a reload does, and connections to the profiles' upstreams.
type testProfiles struct {
	cfg  atomic.Pointer[config.Config]
	wrap func(Conn) Conn // around every connection, if set
}

func (p *testProfiles) Config() *config.Config { return p.cfg.Load() }

func (p *testProfiles) Open(ctx context.Context, name string) (Conn, error) {
	s, err := upstream.New(p.Config().Profile(name), upstream.Options{})
	if err != nil {
		return nil, err
	}
	c, err := s.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if p.wrap != nil {
		return p.wrap(c), nil
	}
	return c, nil
}

// reload switches to the configuration text.
func (p *testProfiles) reload(t *testing.T, cfgText string) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(cfgText))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	p.cfg.Store(cfg)
}

// harness is a queue over a spool, delivering to the upstream its
// configuration names, with its logs kept.
type harness struct {
	q        *Queue
	sp       *spool.Spool
	profiles *testProfiles
	logs     *testpeer.Buffer
	stop     func() // ends Run and waits for it; safe to call twice
}

// newHarness makes a queue over sp for the configuration text; run starts
// it. opts.Spool, Profiles and Logger are filled in.
func newHarness(t *testing.T, cfgText string, sp *spool.Spool, opts Options) *harness {
	t.Helper()
	h := &harness{sp: sp, profiles: &testProfiles{}, logs: &testpeer.Buffer{}}
	h.profiles.reload(t, cfgText)
	opts.Spool, opts.Profiles = sp, h.profiles
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.q = New(opts)
	h.stop = func() {}
	t.Cleanup(func() {
		h.q.Close()
		h.stop()
		if t.Failed() {
			t.Logf("queue logs:\n%s", h.logs.String())
		}
	})
	return h
}

// run starts delivering until the test ends or h.stop.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.q.Run(ctx); close(done) }()
	h.stop = sync.OnceFunc(func() { cancel(); <-done })
}

// startQueue is newHarness, running.
func startQueue(t *testing.T, cfgText string, sp *spool.Spool, opts Options) *harness {
	t.Helper()
	h := newHarness(t, cfgText, sp, opts)
	h.run()
	return h
}

// submit queues msgBody for profile "up", as relay does with a message it
// accepted, and returns its ID.
func (h *harness) submit(t *testing.T, from string, to ...string) string {
	t.Helper()
	return queueMessage(t, h.sp, h.q, from, to...)
}

// queueMessage commits msgBody to sp and, if q is not nil, hands it to q.
func queueMessage(t *testing.T, sp *spool.Spool, q *Queue, from string, to ...string) string {
	t.Helper()
	env := &spool.Envelope{Profile: "up", From: from}
	for _, r := range to {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
	}
	w, err := sp.Create(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte(msgBody)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q != nil {
		q.Enqueue(env)
	}
	return env.ID
}

// testConfig is a configuration whose profile "up" delivers to the
// upstream at addr, with backoffs in milliseconds. Each of settings
// ("max_lifetime = \"1s\"") replaces a [queue] setting.
func testConfig(t *testing.T, addr string, settings ...string) string {
	queue := map[string]string{"min_backoff": `"200ms"`, "max_backoff": `"1s"`, "max_lifetime": `"1h"`}
	for _, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		queue[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "up"

[queue]
min_backoff = %s
max_backoff = %s
max_lifetime = %s

[[profiles]]
name = "up"
hostname = %q
port = %s
smtp_timeout = "2s"
max_connections = 2
`, t.TempDir(), queue["min_backoff"], queue["max_backoff"], queue["max_lifetime"], host, port)
}

// slowBackoff keeps a deferred message from coming back within a test.
var slowBackoff = []string{`min_backoff = "1h"`, `max_backoff = "1h"`}

// refuse answers the recipient addr with code and enhanced code, and
// takes the others.
func refuse(addr string, code int, enhanced smtp.EnhancedCode, text string) func(string) error {
	return func(to string) error {
		if to == addr {
			return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: text}
		}
		return nil
	}
}

// splitBounce returns the bounce (from the null sender) and the other
// message among msgs.
func splitBounce(msgs []testpeer.Message) (orig, dsn *testpeer.Message) {
	for i := range msgs {
		if msgs[i].From == "" {
			dsn = &msgs[i]
		} else {
			orig = &msgs[i]
		}
	}
	return orig, dsn
}
