package relay

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// openBDAT connects to addr and starts a BDAT message with one chunk of
// size octets (at most 5), not the LAST: the message stays open.
func openBDAT(t *testing.T, addr string, size int) *client {
	t.Helper()
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	c.send(fmt.Sprintf("BDAT %d", size))
	c.conn.Write([]byte("abcde"[:size]))
	c.expect(250)
	return c
}

// TestBDATInterrupted: go-smtp runs Data for BDAT in a goroutine of its
// own and keeps reading commands while a message is unfinished, calling
// the session's Reset, Logout and Auth meanwhile. Interrupting a BDAT
// message with each of them, or with the connection's end, must neither
// race (go test -race), nor hang, nor hand the upstream a message; and the
// server serves a normal message afterwards.
func TestBDATInterrupted(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	pki := testpeer.TestPKI(t)
	_, certFile, keyFile := pki.Files(t)
	h := startHarness(t, upstreamConfig(t, u, fmt.Sprintf(`default_profile = "up"
tls_cert_file = %q
tls_key_file = %q`, certFile, keyFile)), Options{})
	tests := []struct {
		name      string
		size      int
		interrupt func(c *client)
	}{
		{"RSET", 5, func(c *client) { c.must("RSET", 250, "") }},
		{"RSET after an empty chunk", 0, func(c *client) { c.must("RSET", 250, "") }},
		{"EHLO", 5, func(c *client) { c.ehlo() }},
		{"EHLO after an empty chunk", 0, func(c *client) { c.ehlo() }},
		// RFC 4954 §4: AUTH within a transaction gets 503.
		{"AUTH", 5, func(c *client) { c.must("AUTH PLAIN "+b64("\x00u\x00p"), 503, "5.5.1") }},
		{"STARTTLS", 5, func(c *client) {
			c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
			c.ehlo()
		}},
		{"STARTTLS after an empty chunk", 0, func(c *client) {
			c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
			c.ehlo()
		}},
		{"the end of the connection", 5, func(c *client) { c.conn.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 10; i++ { // races show up only sometimes
				c := openBDAT(t, h.addr, tt.size)
				tt.interrupt(c)
				if tt.name != "the end of the connection" {
					normalMessage(c, "a@example.com")
					c.must("QUIT", 221, "")
					c.conn.Close()
				}
			}
			h.waitIdle(t)
		})
	}
	msgs := u.Messages()
	for _, m := range msgs {
		if string(m.Data[len(m.Data)-len(msgBody):]) != msgBody {
			t.Errorf("upstream got an interrupted message: %q", m.Data)
		}
	}
	if len(msgs) != 70 {
		t.Errorf("upstream got %d messages; want the 70 normal ones", len(msgs))
	}
}

// TestBDATAbandonedLogged: a BDAT message the client ends before its LAST
// chunk (RSET, EHLO, STARTTLS, a hang-up) gets no reply, so it is logged
// once as "message abandoned", not as a refused command; and the next
// refusal go-smtp answers itself is still logged (an abandoned message
// announces no refusal of relay's own). In direct and in queue mode.
func TestBDATAbandonedLogged(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	pki := testpeer.TestPKI(t)
	_, certFile, keyFile := pki.Files(t)
	tlsKeys := fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\nmax_message_bytes = 4096\n", certFile, keyFile)
	for _, mode := range []struct {
		name string
		cfg  string
		opts Options
	}{
		{"direct", upstreamConfig(t, u, "default_profile = \"up\"\n"+tlsKeys), Options{}},
		{"queue", strings.Replace(queueConfig(t, u.Addr), "[queue]", tlsKeys+"\n[queue]", 1), Options{Spool: testpeer.OpenSpool(t, t.TempDir())}},
	} {
		h := startHarness(t, mode.cfg, mode.opts)
		for _, tt := range []struct {
			name      string
			interrupt func(c *client)
		}{
			{"RSET", func(c *client) { c.must("RSET", 250, "") }},
			{"EHLO", func(c *client) { c.ehlo() }},
			{"STARTTLS", func(c *client) {
				c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
				c.ehlo()
			}},
			{"a hang-up", func(c *client) { c.conn.Close() }},
			// go-smtp answers a chunk past max_message_bytes itself (552),
			// and ends the message as RSET does.
			{"a chunk past max_message_bytes", func(c *client) {
				c.send("BDAT 5000 LAST")
				c.conn.Write([]byte(strings.Repeat("x", 5000)))
				c.expect(552)
			}},
		} {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				libraryRefusals := 1 // the RCPT below
				if strings.Contains(tt.name, "max_message_bytes") {
					libraryRefusals++ // and the 552
				}
				before := len(h.logs.String())
				c := openBDAT(t, h.addr, 5)
				tt.interrupt(c)
				testpeer.WaitFor(t, "the abandoned message's log line", 5*time.Second, func() bool {
					return len(grepLines(h.logs.String()[before:], "message abandoned")) > 0
				})
				if tt.name != "a hang-up" {
					c.must("RCPT TO:<b@example.com>", 502, "5.5.1") // go-smtp's own: no MAIL yet
					testpeer.WaitFor(t, "go-smtp's refusals to be logged", 5*time.Second, func() bool {
						return len(grepLines(h.logs.String()[before:], "answered by the SMTP library")) >= libraryRefusals
					})
				}
				c.conn.Close()
				h.waitIdle(t)
				logs := h.logs.String()[before:]
				if lines := grepLines(logs, "message abandoned"); len(lines) != 1 || !strings.Contains(lines[0], "command=BDAT") || !strings.Contains(lines[0], "client=127.0.0.1") || !strings.Contains(lines[0], "level=INFO") {
					t.Errorf("log lines for the abandoned message: %q; want one INFO line with the client and command=BDAT", lines)
				}
				if lines := grepLines(logs, "answered by the SMTP library"); tt.name != "a hang-up" && len(lines) != libraryRefusals {
					t.Errorf("go-smtp's own refusals logged: %q; want %d", lines, libraryRefusals)
				}
				if lines := grepLines(logs, "command=DATA"); len(lines) != 0 {
					t.Errorf("the abandoned message was logged as a refused DATA: %q", lines)
				}
			})
		}
	}
	if n := len(u.Messages()); n != 0 {
		t.Errorf("upstream got %d abandoned messages; want none", n)
	}
}

// TestBDATRefusalNeverSentForgotten: relay refuses a BDAT message during
// a chunk before LAST (its header is too long) after go-smtp has answered
// the chunk 250; the client then sends RSET instead of another BDAT, so
// go-smtp never sends relay's 552. The refusal relay announced to the
// reply watch must not swallow the log line of the next refusal go-smtp
// answers itself.
func TestBDATRefusalNeverSentForgotten(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, "default_profile = \"up\"\nmax_header_bytes = 100\n"), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	chunk := "X-Long: " + strings.Repeat("a", 300) + "\r\n"
	c.send(fmt.Sprintf("BDAT %d", len(chunk)))
	c.conn.Write([]byte(chunk))
	c.expect(250) // go-smtp's Continue: the chunk went into the pipe whole
	testpeer.WaitFor(t, "relay's refusal of the message", 5*time.Second, func() bool {
		return len(grepLines(h.logs.String(), "command=DATA")) > 0
	})
	c.must("RSET", 250, "")
	c.must("RCPT TO:<b@example.com>", 502, "5.5.1") // go-smtp's own: no MAIL yet
	testpeer.WaitFor(t, "go-smtp's refusal to be logged", 5*time.Second, func() bool {
		return len(grepLines(h.logs.String(), "answered by the SMTP library")) > 0
	})
}
