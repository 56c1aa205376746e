package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestSystemConfigNote: on a packaged install (the service's configuration
// file exists) relay check and the other commands with no -config,
// $RELAY_CONFIG or ./relay.toml still run on the embedded default, with
// the same output and exit status, and say on stderr, in one line, which
// file the service reads and how to check it. With a configuration file of
// their own they say nothing of it. The service's path is systemConfig,
// set here to a file in a temporary directory instead of /etc.
func TestSystemConfigNote(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("RELAY_CONFIG", "")
	defer func(s string) { systemConfig = s }(systemConfig)
	systemConfig = filepath.Join(dir, "etc", "relay", "relay.toml")
	relay := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(args, strings.NewReader(""), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	hint := "relay check -config " + systemConfig

	for _, args := range [][]string{{"check"}, {"queue", "list"}, {"token", "status"}} {
		code0, out0, err0 := relay(args...)
		if strings.Contains(err0, systemConfig) {
			t.Fatalf("relay %s without the service's file: stderr %q names it", args, err0)
		}
		if err := os.MkdirAll(filepath.Dir(systemConfig), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(systemConfig, []byte("[server]\nlisten = \"127.0.0.1:2626\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := relay(args...)
		note, rest, _ := strings.Cut(errOut, "\n")
		if code != code0 || out != out0 || rest != err0 || !strings.Contains(note, systemConfig) || !strings.HasSuffix(note, hint) {
			t.Errorf("relay %s with the service's file: exit %d, stdout %q, stderr %q;\nwant exit %d, stdout %q, stderr one line ending in %q, then %q", args, code, out, errOut, code0, out0, hint, err0)
		}
		os.Remove(systemConfig)
	}

	// relay serve on the embedded default: among its start-up lines, on
	// stdout (announce).
	serveNote := func() string {
		t.Helper()
		events := make(recordingNotifier, 10)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stdout, stderr := &testpeer.Buffer{}, &testpeer.Buffer{}
		done := make(chan int, 1)
		go func() {
			done <- serve(ctx, []string{"-listen", "127.0.0.1:0", "-admin-listen="}, stdout, stderr, serveHooks{notifier: func(*slog.Logger) stateNotifier { return events }})
		}()
		events.next(t, "ready")
		cancel() // at once: relay serve stops even before it serves (TestServeAfterStop)
		if code := <-done; code != 0 {
			t.Fatalf("relay serve on the embedded default exited %d:\n%s", code, stderr.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if strings.Contains(line, systemConfig) {
				return line
			}
		}
		return ""
	}
	if line := serveNote(); line != "" {
		t.Errorf("relay serve without the service's file: stderr names it: %q", line)
	}
	os.MkdirAll(filepath.Dir(systemConfig), 0o755)
	os.WriteFile(systemConfig, []byte("[server]\nlisten = \"127.0.0.1:2626\"\n"), 0o644)
	if line := serveNote(); !strings.HasSuffix(line, hint) {
		t.Errorf("relay serve with the service's file: stderr line %q; want one naming it, ending in %q", line, hint)
	}

	// A configuration of its own: ./relay.toml, $RELAY_CONFIG or -config.
	os.MkdirAll(filepath.Dir(systemConfig), 0o755)
	os.WriteFile(systemConfig, []byte("[server]\nlisten = \"127.0.0.1:2626\"\n"), 0o644)
	own := filepath.Join(dir, "own.toml")
	os.WriteFile(own, []byte("[server]\nlisten = \"127.0.0.1:2727\"\n"), 0o644)
	if _, _, errOut := relay("check", "-config", own); strings.Contains(errOut, systemConfig) {
		t.Errorf("relay check -config own.toml: stderr %q names the service's file", errOut)
	}
	t.Setenv("RELAY_CONFIG", own)
	if _, _, errOut := relay("check"); strings.Contains(errOut, systemConfig) {
		t.Errorf("relay check with $RELAY_CONFIG: stderr %q names the service's file", errOut)
	}
	t.Setenv("RELAY_CONFIG", "")
	os.WriteFile("relay.toml", []byte("[server]\nlisten = \"127.0.0.1:2828\"\n"), 0o644)
	if _, _, errOut := relay("check"); strings.Contains(errOut, systemConfig) {
		t.Errorf("relay check with ./relay.toml: stderr %q names the service's file", errOut)
	}
}
