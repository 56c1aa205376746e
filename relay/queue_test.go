package relay

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

// queueConfig is a relay in queue mode whose profile "up" delivers to
// the upstream at upstreamAddr, with backoffs in milliseconds.
func queueConfig(t *testing.T, upstreamAddr string) string {
	host, port, _ := net.SplitHostPort(upstreamAddr)
	return fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "up"

[queue]
min_backoff = "200ms"
max_backoff = "1s"

[[profiles]]
name = "up"
hostname = %q
port = %s
smtp_timeout = "2s"
`, t.TempDir(), host, port)
}

// sendOne submits a message and returns the DATA reply.
func sendOne(t *testing.T, addr, from string, to ...string) string {
	t.Helper()
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<"+from+">", 250, "")
	for _, r := range to {
		c.must("RCPT TO:<"+r+">", 250, "")
	}
	code, last := c.data(msgBody)
	if code != 250 {
		t.Fatalf("DATA → %q; want 250", last)
	}
	c.cmd("QUIT")
	return last
}

func TestQueueAcceptsThenDelivers(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := testpeer.OpenSpool(t, t.TempDir())
	addr := startHarness(t, queueConfig(t, u.Addr), Options{Spool: sp}).addr
	reply := sendOne(t, addr, "alarms@plant.example.com", "ops@example.com")
	if !strings.HasPrefix(reply, "250 2.0.0 OK queued as ") {
		t.Fatalf("DATA reply %q; want 250 2.0.0 OK queued as ID", reply)
	}
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	id := strings.TrimPrefix(reply, "250 2.0.0 OK queued as ")
	if !strings.HasPrefix(string(m.Data), "Received: ") || !strings.Contains(string(m.Data), "id "+id) || !strings.HasSuffix(string(m.Data), msgBody) {
		t.Fatalf("upstream got %q; want the body after a Received header naming %s, and nothing else", m.Data, id)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueSpoolWriteError: when the spool cannot be written, the client
// gets 451 4.3.0, never 250, and nothing is half-queued.
func TestQueueSpoolWriteError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("running as root: permissions do not stop writes; closing the spool instead")
	}
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := startHarness(t, queueConfig(t, testpeer.FreeAddr(t)), Options{Spool: sp}).addr
	sp.Close() // every Create and Commit now fails
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	code, last := c.data(msgBody)
	if code != 451 || !strings.HasPrefix(last, "451 4.3.0") {
		t.Fatalf("DATA → %q; want 451 4.3.0", last)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "queue", "*"))
	// The spool keeps removed messages' files for reuse as free-N.tmp.
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasPrefix(filepath.Base(f), "free-") })
	if len(files) != 0 {
		t.Fatalf("spool holds %v after a failed write", files)
	}
}
