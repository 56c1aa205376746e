package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/upstream"
)

// harness is a relay server on 127.0.0.1 with its logs kept: the one way
// the tests of this package start a relay.
type harness struct {
	addr string
	srv  *Server
	logs *testpeer.Buffer
}

// startHarness runs a relay server for the configuration text. Its debug
// logs go to a buffer, printed when the test fails. opts.Transports and
// opts.Logger are filled in; with opts.Spool the delivery queue runs.
func startHarness(t testing.TB, cfgText string, opts Options) *harness {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(cfgText))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	pki := testpeer.TestPKI(t)
	logs := &testpeer.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Transports = Transports(upstream.Options{RootCAs: pki.CAPool, Logger: opts.Logger}, nil)
	srv, err := NewServer(cfg, opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	// With a spool, the delivery queue runs too.
	ctx, cancel := context.WithCancel(context.Background())
	queueDone := make(chan struct{})
	if opts.Spool != nil {
		go func() { srv.RunQueue(ctx); close(queueDone) }()
	} else {
		close(queueDone)
	}
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-queueDone
		if t.Failed() {
			t.Logf("relay logs:\n%s", logs.String())
		}
	})
	return &harness{addr: ln.Addr().String(), srv: srv, logs: logs}
}

// connections is the number of client connections the server holds.
func (h *harness) connections() int {
	h.srv.mu.Lock()
	defer h.srv.mu.Unlock()
	return h.srv.total
}

// waitIdle waits, at most 20 s, until the server holds no connection.
func (h *harness) waitIdle(t testing.TB) {
	t.Helper()
	testpeer.WaitFor(t, "the server to hold no connection", 20*time.Second, func() bool { return h.connections() == 0 })
}

// fakeClock is a clock whose Sleep advances it at once, so that tests of
// the AUTH throttle do not wait; it records each sleep.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
	frozen bool // Sleep does not advance the clock: as if the client had not waited
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen {
		c.now = c.now.Add(d)
	}
	c.sleeps = append(c.sleeps, d)
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleeps returns the sleeps so far and forgets them.
func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sleeps
	c.sleeps = nil
	return s
}

func (c *fakeClock) options() Options { return Options{Now: c.Now, Sleep: c.Sleep} }

// upstreamConfig is a configuration whose profile "up" delivers directly
// to u; extra goes into [server].
func upstreamConfig(t testing.TB, u *testpeer.Upstream, extra string) string {
	return fmt.Sprintf(`
[server]
data_dir = %q
%s

[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = %d
delivery = "direct"
`, t.TempDir(), extra, u.Port)
}

// maildirConfig is a configuration whose profile "local" writes into a
// Maildir, returned; extra goes into [server].
func maildirConfig(t testing.TB, extra string) (cfg, dir string) {
	dir = filepath.Join(t.TempDir(), "maildir")
	return fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "local"
%s

[[profiles]]
name = "local"
kind = "maildir"
path = %q
`, t.TempDir(), extra, dir), dir
}

// maildirMessages reads the messages in a Maildir's new/.
func maildirMessages(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(data))
	}
	return msgs
}

// normalMessage sends one ordinary message on c, EHLO first, and fails
// unless it is accepted.
func normalMessage(c *client, from string) {
	c.t.Helper()
	c.ehlo()
	c.must("MAIL FROM:<"+from+">", 250, "2.0.0")
	c.must("RCPT TO:<ops@example.com>", 250, "2.0.0")
	if code, last := c.data(msgBody); code != 250 {
		c.t.Fatalf("normal message: DATA → %q; want 250", last)
	}
}

// readAll reads replies until the server closes the connection or 10 s
// pass, and returns the lines.
func readAll(t testing.TB, conn net.Conn) []string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var all []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		all = append(all, buf[:n]...)
		if err != nil {
			break
		}
	}
	return strings.Split(strings.TrimSuffix(string(all), "\r\n"), "\r\n")
}
