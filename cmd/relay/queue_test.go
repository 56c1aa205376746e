package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

// queueOffline is a data directory with a spool and a configuration whose
// admin listener is off, so that relay queue steers the spool itself.
type queueOffline struct {
	cfg, spoolDir string
}

func newQueueOffline(t *testing.T) queueOffline {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "relay.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "up"

[admin]
listen = ""

[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = 9
`, data)), 0o600)
	return queueOffline{cfg: cfg, spoolDir: filepath.Join(data, "spool")}
}

// queue commits a message for later (in an hour) and returns its ID.
func (o queueOffline) queue(t *testing.T, to string) string {
	t.Helper()
	sp := testpeer.OpenSpool(t, o.spoolDir)
	defer sp.Close()
	env := &spool.Envelope{Profile: "up", From: "app@example.com", Recipients: []spool.Recipient{{Addr: to}}}
	w, err := sp.Create(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	w.Write([]byte("Subject: waits\r\n\r\nwaits\r\n"))
	if _, err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	env.NextAttempt = time.Now().Add(time.Hour)
	if err := sp.Update(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	return env.ID
}

func (o queueOffline) envelopes(t *testing.T) map[string]*spool.Envelope {
	t.Helper()
	sp := testpeer.OpenSpool(t, o.spoolDir)
	defer sp.Close()
	envs, err := sp.List()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*spool.Envelope{}
	for _, e := range envs {
		out[e.ID] = e
	}
	return out
}

func (o queueOffline) run(args ...string) (int, string, string) {
	var stdout, stderr strings.Builder
	code := runQueue(append(args, "-config", o.cfg), nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestQueueWithoutServer: with no relay running, relay queue list, retry
// and delete work on the data directory's spool, through the queue's own
// operations, and answer a bad ID with exit 1 and the reason.
func TestQueueWithoutServer(t *testing.T) {
	o := newQueueOffline(t)
	keep, drop := o.queue(t, "keep@example.com"), o.queue(t, "drop@example.com")

	code, out, errOut := o.run("list")
	if code != 0 || !strings.Contains(out, keep+"  ") || !strings.Contains(out, "to <drop@example.com>: pending") || !strings.Contains(out, "2 message(s) queued") {
		t.Fatalf("queue list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = o.run("retry", keep)
	if code != 0 || out != "1 message(s) due now; relay delivers them when it runs\n" {
		t.Fatalf("queue retry %s: exit %d\n%s%s", keep, code, out, errOut)
	}
	envs := o.envelopes(t)
	if !envs[keep].NextAttempt.IsZero() || envs[drop].NextAttempt.IsZero() {
		t.Errorf("after retry of %s: next attempts %v (it) and %v (the other); want now and later", keep, envs[keep].NextAttempt, envs[drop].NextAttempt)
	}
	code, out, errOut = o.run("delete", drop)
	if code != 0 || out != "deleted "+drop+"\n" {
		t.Fatalf("queue delete %s: exit %d\n%s%s", drop, code, out, errOut)
	}
	if envs := o.envelopes(t); len(envs) != 1 || envs[keep] == nil {
		t.Errorf("after delete of %s the spool holds %v; want only %s", drop, envs, keep)
	}
	code, out, errOut = o.run("list", "-json")
	var listed []spool.Envelope
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 1 || listed[0].ID != keep {
		t.Errorf("queue list -json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	code, out, errOut = o.run("retry", "all")
	if code != 0 || !strings.HasPrefix(out, "1 message(s) due now") {
		t.Errorf("queue retry all: exit %d\n%s%s", code, out, errOut)
	}

	for _, verb := range []string{"retry", "delete"} {
		code, out, errOut = o.run(verb, drop)
		if code != exitFail || out != "" || !strings.HasPrefix(errOut, "relay queue "+verb+": ") || !strings.Contains(errOut, drop) {
			t.Errorf("queue %s of a deleted message: exit %d, %q, %q; want 1 and the reason", verb, code, out, errOut)
		}
	}
}

// TestQueueSpoolHeld: a relay that holds the spool but whose admin
// listener relay queue cannot reach gets a hint, not a second writer.
func TestQueueSpoolHeld(t *testing.T) {
	o := newQueueOffline(t)
	id := o.queue(t, "ops@example.com")
	sp := testpeer.OpenSpool(t, o.spoolDir)
	defer sp.Close()
	code, out, errOut := o.run("delete", id)
	if code != exitFail || out != "" || !strings.Contains(errOut, "a relay is running and holds") {
		t.Errorf("queue delete while the spool is held: exit %d, %q, %q", code, out, errOut)
	}
	if _, err := sp.Envelope(id); err != nil {
		t.Errorf("the message is gone: %v", err)
	}
}
