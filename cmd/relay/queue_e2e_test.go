package main

import (
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
	waitUntil(t, 10*time.Second, "a failed delivery attempt in the log", func() bool {
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

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
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
