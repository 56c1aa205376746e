package relay

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// bareLFSession is what `printf 'HELO x\nMAIL FROM:...\n' | nc host 2525`
// sends: every line ended by a bare LF, all of it at once, a line that
// starts with a dot stuffed. Then it reads until the server closes.
const bareLFSession = "HELO cron.example.com\nMAIL FROM:<cron@example.com>\nRCPT TO:<ops@example.com>\nDATA\n" +
	"Subject: nightly backup\n\nbackup finished\n..hidden files: 3\n.\nQUIT\n"

// TestBareLFClient: a client that ends every line with a bare LF, commands
// and message alike, gets its message delivered (line endings made CRLF
// upstream, LF in the Maildir, the dot unstuffed) and a 221, in every
// transport, instead of waiting at the 354 until the read timeout.
func TestBareLFClient(t *testing.T) {
	mcfg, mdir := maildirConfig(t, "")
	maildir := startHarness(t, mcfg, Options{})
	queued := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	queue := startHarness(t, queueConfig(t, queued.Addr), Options{Spool: testpeer.OpenSpool(t, t.TempDir())})
	direct := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	directRelay := startHarness(t, upstreamConfig(t, direct, `default_profile = "up"`), Options{})

	for _, tr := range []struct {
		name string
		addr string
		got  func(t *testing.T) string
	}{
		{"maildir", maildir.addr, func(t *testing.T) string {
			msgs := maildirMessages(t, mdir)
			if len(msgs) != 1 {
				t.Fatalf("%d messages in the Maildir; want 1", len(msgs))
			}
			return strings.ReplaceAll(msgs[0], "\n", "\r\n")
		}},
		{"queue", queue.addr, func(t *testing.T) string { return string(queued.WaitMessages(t, 1, 10*time.Second)[0].Data) }},
		{"direct", directRelay.addr, func(t *testing.T) string { return string(direct.WaitMessages(t, 1, 10*time.Second)[0].Data) }},
	} {
		t.Run(tr.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tr.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(bareLFSession)); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			replies, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("reading the replies: %v (so far %q)", err, replies)
			}
			var codes []string
			for _, line := range strings.Split(strings.TrimSpace(string(replies)), "\r\n") {
				codes = append(codes, line[:3])
			}
			if got := strings.Join(codes, " "); got != "220 250 250 250 354 250 221" {
				t.Fatalf("replies %s:\n%s\nwant 220 250 250 250 354 250 221", got, replies)
			}
			if msg := tr.got(t); !strings.HasSuffix(msg, "\r\nSubject: nightly backup\r\n\r\nbackup finished\r\n.hidden files: 3\r\n") {
				t.Errorf("delivered message:\n%q\nwant it to end with the message, CRLF lines, the dot unstuffed", msg)
			}
		})
	}
}
