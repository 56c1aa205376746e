package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
)

// hookEvent is one call a service manager's notifier received.
type hookEvent struct{ kind, status string }

// recordingNotifier is a stateNotifier that passes each call on a channel.
type recordingNotifier chan hookEvent

func (n recordingNotifier) ready(s string)     { n <- hookEvent{"ready", s} }
func (n recordingNotifier) reloading(s string) { n <- hookEvent{"reloading", s} }
func (n recordingNotifier) stopping(s string)  { n <- hookEvent{"stopping", s} }

func (n recordingNotifier) next(t *testing.T, kind string) string {
	t.Helper()
	select {
	case e := <-n:
		if e.kind != kind {
			t.Fatalf("notifier got %s %q; want %s", e.kind, e.status, kind)
		}
		return e.status
	case <-time.After(20 * time.Second):
		t.Fatalf("notifier got no %s within 20 s", kind)
		return ""
	}
}

// recordingSink is an eventSink that keeps what it is given.
type recordingSink struct {
	mu     sync.Mutex
	events []string
}

func (s *recordingSink) add(kind string, id uint32, msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf("%s %d %s", kind, id, msg))
	return nil
}
func (s *recordingSink) Info(id uint32, msg string) error    { return s.add("info", id, msg) }
func (s *recordingSink) Warning(id uint32, msg string) error { return s.add("warning", id, msg) }
func (s *recordingSink) Error(id uint32, msg string) error   { return s.add("error", id, msg) }

func (s *recordingSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// requestReload asks serve for a reload, waiting at most 20 s for it to
// take the request.
func requestReload(t *testing.T, reload chan<- struct{}) {
	t.Helper()
	select {
	case reload <- struct{}{}:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not take the reload request within 20 s")
	}
}

// TestServeHooks drives relay serve as the Windows service does, through
// its hooks: ready only once it accepts connections; a reload request
// reloads as SIGHUP does, and a refused one reaches the extra log
// handler as an error; cancelling the context drains as SIGTERM does, so
// a transaction in progress still completes.
func TestServeHooks(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.toml")
	good := healthProfile + "[server]\ndefault_profile = \"local\"\n"
	os.WriteFile(cfg, []byte(good), 0o644)
	events := make(recordingNotifier, 10)
	sink := &recordingSink{}
	reload := make(chan struct{})
	hooks := serveHooks{
		logHandler: func(h slog.Handler) slog.Handler { return slog.NewMultiHandler(h, newEventLogHandler(sink)) },
		notifier:   func(*slog.Logger) stateNotifier { return events },
		reload:     reload,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &testpeer.Buffer{}
	done := make(chan int, 1)
	t.Chdir(dir)
	go func() {
		done <- serve(ctx, []string{"-config", cfg, "-listen", "127.0.0.1:0", "-admin-listen="}, &testpeer.Buffer{}, stderr, hooks)
	}()
	status := events.next(t, "ready")
	addr, ok := strings.CutPrefix(status, "serving SMTP on ")
	if !ok {
		t.Fatalf("ready(%q); want serving SMTP on ADDR", status)
	}
	sendSMTP(t, addr, "app@example.com", []string{"ops@example.com"}, "Subject: after ready\r\n\r\nhi\r\n")

	requestReload(t, reload)
	events.next(t, "reloading")
	if s := events.next(t, "ready"); !strings.HasSuffix(s, "; configuration reloaded") {
		t.Errorf("ready after a reload = %q; want it to end in configuration reloaded", s)
	}
	os.WriteFile(cfg, []byte(good+"[server2]\n"), 0o644)
	requestReload(t, reload)
	events.next(t, "reloading")
	if s := events.next(t, "ready"); !strings.Contains(s, "reload refused: "+cfg+":") {
		t.Errorf("ready after a bad reload = %q; want reload refused: %s:LINE", s, cfg)
	}
	if got := strings.Join(sink.all(), "\n"); !strings.Contains(got, "error 2 level=ERROR msg=\"reload refused: the configuration in effect stays\"") {
		t.Errorf("the extra log handler got %q; want the refused reload as an error", got)
	}

	// A transaction in progress when the service is told to stop.
	c := dialSMTP(t, addr)
	if err := c.Mail("app@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("ops@example.com", nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	events.next(t, "stopping")
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA after the stop request: %v", err)
	}
	w.Write([]byte("Subject: during the drain\r\n\r\nhi\r\n"))
	if err := w.Close(); err != nil {
		t.Errorf("end of DATA after the stop request: %v; want 250, as after SIGTERM", err)
	}
	c.Quit()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve = %d after the stop request; want 0", code)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not return after the stop request")
	}
	files, _ := os.ReadDir(filepath.Join(dir, "maildir", "new"))
	if len(files) != 2 {
		t.Errorf("maildir holds %d messages; want 2", len(files))
	}
}

// TestEventLogHandler: WARN lines reach the Event Log as warnings and
// ERROR lines as errors, with their attributes and without a time; INFO
// lines do not.
func TestEventLogHandler(t *testing.T) {
	sink := &recordingSink{}
	logger := slog.New(newEventLogHandler(sink)).With("component", "queue")
	logger.Info("delivered", "id", "A1")
	logger.Warn("delivery failed", "id", "A2", "error", "451 4.4.1 timeout")
	logger.WithGroup("upstream").Error("relay does not start", "error", "boom")
	want := []string{
		`warning 2 level=WARN msg="delivery failed" component=queue id=A2 error="451 4.4.1 timeout"`,
		`error 2 level=ERROR msg="relay does not start" component=queue upstream.error=boom`,
	}
	if got := sink.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Event Log got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWindowsLayout: the service's files sit under %ProgramData%\relay,
// and the relay.toml install writes is valid, keeps its data in the data
// directory and listens on loopback only.
func TestWindowsLayout(t *testing.T) {
	l := layoutUnder(`C:\ProgramData\`)
	want := windowsLayout{root: `C:\ProgramData\relay`, config: `C:\ProgramData\relay\relay.toml`, data: `C:\ProgramData\relay\data`, logs: `C:\ProgramData\relay\logs`}
	if l != want {
		t.Errorf("layoutUnder = %+v; want %+v", l, want)
	}
	text, err := l.defaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "relay.toml")
	os.WriteFile(path, []byte(text), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("the default Windows relay.toml: %v\n%s", err, text)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("the default Windows relay.toml warns: %q", cfg.Warnings)
	}
	if cfg.Server.DataDir != l.data || cfg.Server.Listen != "127.0.0.1:2525" || cfg.Profiles[0].Path != l.data+`\maildir` {
		t.Errorf("data_dir %q, listen %q, maildir %q; want %q, 127.0.0.1:2525, %q", cfg.Server.DataDir, cfg.Server.Listen, cfg.Profiles[0].Path, l.data, l.data+`\maildir`)
	}
	if _, err := layoutUnder(`C:\Users\o'brien`).defaultConfig(); err == nil {
		t.Error("a data directory with a quote: no error; want one (it cannot stand in a TOML literal string)")
	}
}

// TestOpenServiceLog: the service's log is appended to, and one past
// maxLogBytes is moved to relay.log.1 when the service starts.
func TestOpenServiceLog(t *testing.T) {
	name := filepath.Join(t.TempDir(), "relay.log")
	for _, line := range []string{"one\n", "two\n"} {
		f, err := openServiceLog(name)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(line)
		f.Close()
	}
	if b, _ := os.ReadFile(name); string(b) != "one\ntwo\n" {
		t.Errorf("relay.log = %q; want both lines", b)
	}
	os.Truncate(name, maxLogBytes+1)
	f, err := openServiceLog(name)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("three\n")
	f.Close()
	if b, _ := os.ReadFile(name); string(b) != "three\n" {
		t.Errorf("relay.log after the rotation = %q; want only the new line", b)
	}
	if fi, err := os.Stat(name + ".1"); err != nil || fi.Size() != maxLogBytes+1 {
		t.Errorf("relay.log.1: %v; want the old log", err)
	}
}

// TestServiceOffWindows: relay service says it is for Windows elsewhere.
func TestServiceOffWindows(t *testing.T) {
	code, stdout, stderr := runBinary(t, t.TempDir(), "", "service", "install")
	if code != exitFail || stdout != "" || !strings.Contains(stderr, "relay service is for Windows") {
		t.Errorf("relay service install = %d, %q, %q; want 1 and: relay service is for Windows", code, stdout, stderr)
	}
	code, _, stderr = runBinary(t, t.TempDir(), "", "service")
	if code != exitFail || !strings.Contains(stderr, "usage: relay service install") {
		t.Errorf("relay service = %d, %q; want 1 and the usage", code, stderr)
	}
}
