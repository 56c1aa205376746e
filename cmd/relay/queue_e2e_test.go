package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

func queueTestConfig(upstreamAddr string) string {
	host, port, _ := strings.Cut(upstreamAddr, ":")
	return fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "up"

[admin]
listen = "" # relay queue works on the data directory, whatever runs on 127.0.0.1:8025

[queue]
min_backoff = "500ms"
max_backoff = "2s"

[[profiles]]
name = "up"
hostname = %q
port = %s
smtp_timeout = "5s"
`, host, port)
}

// TestQueueAcrossRestart is the "done when": with the upstream
// stopped a legacy client's message gets 250, `relay queue list` shows it
// with the upstream's error, and it arrives soon after the upstream
// returns, across a restart of relay in between.
func TestQueueAcrossRestart(t *testing.T) {
	python := needTool(t, "python3")
	upAddr := testpeer.FreeAddr(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(queueTestConfig(upAddr)), 0o600)

	p := startBinary(t, dir, nil)
	host, port, _ := strings.Cut(p.addr, ":")
	out, err := exec.Command(python, "-c", pythonClient, host, port, "", "", "alarms@plant.example.com").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK {}" {
		t.Fatalf("python send while the upstream is down: %v %s", err, out)
	}
	testpeer.WaitFor(t, "a failed delivery attempt in the log", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "msg=deferred")
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()

	code, list, stderr := runBinary(t, dir, "", "queue", "list")
	if code != 0 || !strings.Contains(list, "from <alarms@plant.example.com>") || !strings.Contains(list, "to <ops@example.com>: pending: upstream "+upAddr+": connect") {
		t.Fatalf("relay queue list: exit %d\n%s\n%s", code, list, stderr)
	}

	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: upAddr})
	startBinary(t, dir, nil)
	m := u.WaitMessages(t, 1, 30*time.Second)[0]
	if !strings.Contains(string(m.Data), "Tank 4 high level.") {
		t.Fatalf("upstream got %q", m.Data)
	}
}

// TestKill9DuringBurst: relay is killed with SIGKILL while 10 clients send
// a bounded burst of 500 messages; after a restart every message that got
// a 250 reaches the upstream at least once. Duplicates (at least once is
// the promise) are counted and reported.
func TestKill9DuringBurst(t *testing.T) {
	const clients, perClient = 10, 50
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(queueTestConfig(u.Addr)), 0o600)
	p := startBinary(t, dir, nil)

	var acked sync.Map // seq → true, for every 250
	var nacked atomic.Int64
	killAt := int64(100 + rand.IntN(300))
	var wg sync.WaitGroup
	var once sync.Once
	kill := func() {
		once.Do(func() { p.cmd.Process.Signal(syscall.SIGKILL) })
	}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				seq := c*perClient + i
				body := fmt.Sprintf("Subject: burst\r\nX-Test-Seq: %d\r\n\r\nmessage %d\r\n", seq, seq)
				if err := sendPlain(p.addr, "burst@example.com", "sink@example.com", body); err != nil {
					return // relay is gone: the rest of this client's messages were never accepted
				}
				acked.Store(seq, true)
				if nacked.Add(1) == killAt {
					kill()
				}
			}
		}(c)
	}
	wg.Wait()
	kill()
	p.cmd.Wait()
	total := int(nacked.Load())
	t.Logf("killed relay after %d of %d messages got 250", total, clients*perClient)
	if int64(total) < killAt {
		t.Fatalf("only %d messages got 250 before the kill; the burst did not run", total)
	}

	startBinary(t, dir, nil)
	seqRe := regexp.MustCompile(`X-Test-Seq: (\d+)`)
	seen := map[int]int{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen = map[int]int{}
		for _, m := range u.Messages() {
			if s := seqRe.FindSubmatch(m.Data); s != nil {
				n, _ := strconv.Atoi(string(s[1]))
				seen[n]++
			}
		}
		missing := 0
		acked.Range(func(k, _ any) bool {
			if seen[k.(int)] == 0 {
				missing++
			}
			return true
		})
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never reached the upstream", missing, total)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("all %d acknowledged messages delivered; %d duplicate deliveries; %d unacknowledged messages delivered too", total, dups, len(seen)-total)
}

// sendPlain sends one message without TLS or AUTH, as a legacy
// application does.
func sendPlain(addr, from, to, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

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
