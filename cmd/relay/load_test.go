package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestLoadWithSMTPSource: Postfix's own load generator sends a bounded
// burst (500 messages of 10 KB over 20 parallel sessions) through the
// binary in queue mode; every message reaches the upstream exactly once.
// It checks correctness under load; speed is measured by bench/compare.sh.
func TestLoadWithSMTPSource(t *testing.T) {
	source := "/usr/sbin/smtp-source"
	if _, err := os.Stat(source); err != nil {
		t.Skipf("Postfix's smtp-source is not installed (.ci/run installs postfix): %v", err)
	}
	const n, sessions = 500, 20
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(queueTestConfig(u.Addr)), 0o600)
	p := startBinary(t, dir, nil)

	out, err := exec.Command(source, "-s", fmt.Sprint(sessions), "-m", fmt.Sprint(n), "-l", "10240",
		"-f", "load@example.com", "-t", "sink@example.com", p.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	msgs := u.WaitMessages(t, n, 60*time.Second)
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive now
	if got := len(u.Messages()); got != n {
		t.Fatalf("upstream got %d messages; want exactly %d", got, n)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		i := strings.Index(string(m.Data), " id ")
		if i < 0 {
			t.Fatalf("message without relay's Received id: %q", m.Data[:min(200, len(m.Data))])
		}
		id := strings.Fields(string(m.Data[i+4:]))[0]
		if seen[id] {
			t.Fatalf("message %s delivered twice", id)
		}
		seen[id] = true
		if len(m.Data) < 10240 {
			t.Fatalf("message %s has %d bytes; want at least 10240", id, len(m.Data))
		}
	}
	if s := p.stderr.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("errors in the log under load:\n%s", s)
	}
}
