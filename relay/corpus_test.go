package relay

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/corpus"
	"github.com/relaymail/relay/internal/testpeer"
)

// TestCorpusThroughEveryTransport sends every message of the corpus
// (internal/corpus) through the Maildir transport, the queue to an
// upstream and direct mode to an upstream, and compares what arrives, after
// relay's Received header, byte for byte with what was sent: line endings
// made CRLF, and in the Maildir made LF; upstream, lines longer than 998
// octets folded.
func TestCorpusThroughEveryTransport(t *testing.T) {
	mcfg, mdir := maildirConfig(t, "")
	maildir := startHarness(t, mcfg, Options{})
	t.Run("maildir", func(t *testing.T) {
		seen := map[string]bool{}
		for _, m := range corpus.All() {
			if !sendCorpus(t, maildir.addr, m) {
				continue
			}
			got := newMaildirMessage(t, mdir, seen)
			want := "Return-Path: <" + m.From + ">\n"
			rest, ok := strings.CutPrefix(got, want)
			if !ok {
				t.Errorf("%s: stored message does not start with %q", m.Name, want)
				continue
			}
			compareCorpus(t, m, []byte(rest), corpus.LF(m.Want()))
		}
	})

	queued := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	sp := testpeer.OpenSpool(t, t.TempDir())
	queueAddr := startHarness(t, queueConfig(t, queued.Addr), Options{Spool: sp}).addr
	direct := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	directRelay := startHarness(t, upstreamConfig(t, direct, `default_profile = "up"`), Options{})
	for _, tr := range []struct {
		name string
		addr string
		u    *testpeer.Upstream
	}{{"queue", queueAddr, queued}, {"direct", directRelay.addr, direct}} {
		t.Run(tr.name, func(t *testing.T) {
			n := 0
			for _, m := range corpus.All() {
				if !sendCorpus(t, tr.addr, m) {
					continue
				}
				n++
				got := tr.u.WaitMessages(t, n, 30*time.Second)[n-1]
				if got.UTF8 != m.UTF8 || got.Body != m.BodyType || strings.Join(got.To, ",") != strings.Join(m.To, ",") {
					t.Errorf("%s: upstream got SMTPUTF8 %v, BODY=%q, to %q; want %v, %q, %q", m.Name, got.UTF8, got.Body, got.To, m.UTF8, m.BodyType, m.To)
				}
				// Lines past 998 octets arrive folded (upstream/body.go).
				compareCorpus(t, m, got.Data, corpus.Fold(m.Want()))
			}
		})
	}
	testpeer.WaitFor(t, "the spool to empty", 10*time.Second, func() bool { return sp.Len() == 0 })
}

// sendCorpus submits m on a connection of its own and reports whether
// relay accepted it; a message with Refused must get exactly that reply.
func sendCorpus(t *testing.T, addr string, m *corpus.Message) bool {
	t.Helper()
	c := dial(t, addr)
	defer c.conn.Close()
	c.ehlo()
	params := ""
	if m.UTF8 {
		params += " SMTPUTF8"
	}
	if m.BodyType != "" {
		params += " BODY=" + m.BodyType
	}
	c.must("MAIL FROM:<"+m.From+">"+params, 250, "")
	for _, r := range m.To {
		c.must("RCPT TO:<"+r+">", 250, "")
	}
	c.must("DATA", 354, "")
	c.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.conn.Write(m.Wire()); err != nil && m.Refused == "" {
		t.Fatalf("%s: write DATA: %v", m.Name, err)
	}
	c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: no reply to the end of DATA: %v", m.Name, err)
	}
	if m.Refused != "" {
		if !strings.HasPrefix(line, m.Refused+" ") {
			t.Errorf("%s: end of DATA → %q; want %s (what relay answers today)", m.Name, strings.TrimSpace(line), m.Refused)
		}
		return false
	}
	if !strings.HasPrefix(line, "250 ") {
		t.Errorf("%s: end of DATA → %q; want 250", m.Name, strings.TrimSpace(line))
		return false
	}
	return true
}

// compareCorpus compares what arrived, Received header first, with want.
func compareCorpus(t *testing.T, m *corpus.Message, got, want []byte) {
	t.Helper()
	rest, ok := corpus.AfterReceived(got)
	if !ok {
		t.Errorf("%s: arrived without a Received header first: %.80q", m.Name, got)
		return
	}
	if !bytes.Equal(rest, want) {
		i := 0
		for i < len(rest) && i < len(want) && rest[i] == want[i] {
			i++
		}
		t.Errorf("%s: %d bytes arrived, %d sent; first difference at byte %d: got %.40q, want %.40q", m.Name, len(rest), len(want), i, rest[i:], want[i:])
	}
}

// newMaildirMessage returns the one message in dir/new that is not in
// seen, and adds it there.
func newMaildirMessage(t *testing.T, dir string, seen map[string]bool) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if !seen[e.Name()] {
			found = append(found, e.Name())
			seen[e.Name()] = true
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d new messages in the Maildir; want 1", len(found))
	}
	data, err := os.ReadFile(filepath.Join(dir, "new", found[0]))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
