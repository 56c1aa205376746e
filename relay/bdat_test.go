package relay

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

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
				c := dial(t, h.addr)
				c.ehlo()
				c.must("MAIL FROM:<a@example.com>", 250, "")
				c.must("RCPT TO:<b@example.com>", 250, "")
				c.send(fmt.Sprintf("BDAT %d", tt.size))
				c.conn.Write([]byte("abcde"[:tt.size]))
				c.expect(250)
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
