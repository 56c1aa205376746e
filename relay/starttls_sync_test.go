package relay

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// expectRelaySTARTTLS reads the 220 to a STARTTLS the client has sent
// and makes TLS: relay's STARTTLS, which hands the connection to the
// secure server (no STARTTLS offered, AUTH offered). go-smtp's own
// STARTTLS would run its handshake above relay's line gate, which holds
// back the ClientHello: the handshake would fail.
func expectRelaySTARTTLS(t *testing.T, c *client) {
	t.Helper()
	if code, lines := c.reply(); code != 220 {
		t.Fatalf("STARTTLS → %q; want 220", lines)
	}
	tc := tls.Client(c.conn, &tls.Config{RootCAs: testpeer.TestPKI(t).CAPool, ServerName: "localhost"})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake after the 220: %v; want relay's STARTTLS, not go-smtp's", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.must("NOOP", 250, "2.0.0") // the first reply inside TLS: no greeting
	if caps := strings.Join(c.ehlo(), "\n"); strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO inside TLS:\n%s\nwant AUTH and no STARTTLS", caps)
	}
}

// TestSTARTTLSAlwaysRelays: every line go-smtp would take for STARTTLS
// is relay's STARTTLS, whatever came before it: go-smtp's own STARTTLS
// never runs. The gate and go-smtp agree on where a DATA message ends
// (a STARTTLS pipelined behind the end of the message, RFC 2920 §3.1), on
// which lines are commands (a SASL response after a 334 is none, even
// one that reads "BDAT 20"), and on what a STARTTLS is (go-smtp upper-
// cases the line: "ſ", U+017F, is an S to it).
func TestSTARTTLSAlwaysRelays(t *testing.T) {
	cfg, _ := smtpsConfig(t, `read_timeout = "3s"`)
	h := startHarness(t, cfg, Options{})
	for _, tt := range []struct {
		name string
		run  func(t *testing.T, c *client)
	}{
		{"pipelined behind the end of DATA", func(t *testing.T, c *client) {
			c.must("MAIL FROM:<app@example.com>", 250, "")
			c.must("RCPT TO:<ops@example.com>", 250, "")
			c.must("DATA", 354, "")
			c.conn.Write([]byte(msgBody + ".\r\nSTARTTLS\r\n"))
			c.expect(250)
		}},
		{"after a SASL response that reads like BDAT", func(t *testing.T, c *client) {
			c.must("AUTH LOGIN", 334, "")
			// go-smtp reads the line as the user name (not base64: 454);
			// the next 20 octets are command lines to it, not a chunk.
			c.conn.Write([]byte("BDAT 20\r\n"))
			if code, lines := c.reply(); code != 454 {
				t.Fatalf("AUTH LOGIN with a response of \"BDAT 20\" → %q; want 454", lines)
			}
			c.must("NOOP", 250, "")
			c.conn.Write([]byte("STARTTLS\r\n"))
		}},
		{"U+017F for the S", func(t *testing.T, c *client) {
			c.conn.Write([]byte("\u017fTARTTLS\r\n"))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			tt.run(t, c)
			expectRelaySTARTTLS(t, c)
		})
	}
}

// TestSASLResponseIsNotSTARTTLS: a SASL response that reads "STArTTlS"
// (the base64 of a password that begins "I0+M9R") is the password, for
// go-smtp to check, not a STARTTLS.
func TestSASLResponseIsNotSTARTTLS(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("AUTH LOGIN", 334, "")
	c.must(b64("printer"), 334, "")
	c.must("STArTTlS", 535, "5.7.8")
	c.must("NOOP", 250, "")
}

// TestSTARTTLSInMessagesIsContent: a STARTTLS line inside a message is
// its content, also where a naive search would see the end of the
// message ("\r\r\n.\r\n" does not end a message to go-smtp), and inside a
// BDAT chunk.
func TestSTARTTLSInMessagesIsContent(t *testing.T) {
	cfg, dir := smtpsConfig(t, `read_timeout = "3s"`)
	h := startHarness(t, cfg, Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<app@example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	c.must("DATA", 354, "")
	c.conn.Write([]byte(msgBody + "STARTTLS\r\nx\r\r\n.\r\nSTARTTLS\r\nend\r\n.\r\n"))
	c.expect(250)
	chunk := "Subject: chunk\r\n\r\nSTARTTLS\r\n"
	c.must("MAIL FROM:<app@example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	c.conn.Write([]byte(fmt.Sprintf("BDAT %d LAST\r\n", len(chunk)) + chunk))
	c.expect(250)
	c.must("NOOP", 250, "")
	msgs := maildirMessages(t, dir)
	if len(msgs) != 2 {
		t.Fatalf("maildir holds %d messages; want 2", len(msgs))
	}
	var lines int
	for _, m := range msgs {
		lines += strings.Count(m, "\nSTARTTLS\n")
	}
	if lines != 3 {
		t.Fatalf("the messages hold %d STARTTLS lines; want 3:\n%q", lines, msgs)
	}
}

// TestLineGateEndsMessagesAsGoSMTP: relay's session reads a DATA message
// from the gate up to the line "." that ends it, unstuffed as go-smtp
// would, go-smtp gets only that end, and no further: a STARTTLS behind it
// is the gate's, whatever the sizes of the reads on either side; a "."
// after a bare CR or LF, or dot-stuffed, ends nothing.
func TestLineGateEndsMessagesAsGoSMTP(t *testing.T) {
	y := strings.Repeat("y", 40<<10)
	body := "a\r\n..\r\nb\r\r\n.\r\nc\n.\nd\r\n.x\r\n" + y + "\r\n.\r\n"
	unstuffed := "a\r\n.\r\nb\r\r\n.\r\nc\n.\nd\r\nx\r\n" + y + "\r\n"
	in := "DATA\r\n" + body + "STARTTLS\r\nNOOP\r\n"
	for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader, iotest.HalfReader} {
		for _, n := range []int{1, 7, 4096, 64 << 10} {
			g := newLineGate()
			g.tlsCmd = true
			src := gateSource(wrap(strings.NewReader(in)), io.EOF)
			var out, msg []byte
			p := make([]byte, n)
			var err error
			for range 1 << 20 {
				var k int
				k, err = g.read(p, src)
				out = append(out, p[:k]...)
				if string(out) == "DATA\r\n" {
					g.replied([]byte("354 go ahead\r\n"))
					if !g.claimMessage() {
						t.Fatal("no message to claim after a 354")
					}
					msg, _ = readWithSize(&messageReader{gate: g, src: src}, n)
				}
				if err != nil {
					break
				}
			}
			if string(msg) != unstuffed {
				t.Fatalf("reads of %d: the session read %d octets (differing at %d); want the %d of the message", n, len(msg), firstDiffString(string(msg), unstuffed), len(unstuffed))
			}
			if _, ok := err.(startTLSCommand); !ok || string(out) != "DATA\r\n.\r\n" {
				t.Fatalf("reads of %d: go-smtp got %q, then %v; want DATA, the end of the message and a startTLSCommand", n, out, err)
			}
		}
	}
}

// TestGoSMTPNeverMakesTLS: should a STARTTLS ever get past the gate to
// go-smtp, go-smtp's handshake fails: its TLS would lie above the gate.
// go-smtp still offers STARTTLS, which relay answers.
func TestGoSMTPNeverMakesTLS(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	if h.srv.plain.TLSConfig == nil {
		t.Fatal("go-smtp has no TLSConfig: it would not offer STARTTLS")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	b.SetDeadline(time.Now().Add(10 * time.Second))
	go tls.Client(b, &tls.Config{RootCAs: testpeer.TestPKI(t).CAPool, ServerName: "localhost"}).Handshake()
	if err := tls.Server(a, h.srv.plain.TLSConfig).Handshake(); err == nil {
		t.Fatal("a handshake with go-smtp's TLSConfig succeeded; want it to fail")
	}
}

// goSMTPDataEnd is go-smtp's dataReader (data.go, v0.25) transcribed: the
// length of the message up to and including the line that ends it, or -1.
func goSMTPDataEnd(msg []byte) int {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
	)
	state := stateBeginLine
	for i, c := range msg {
		switch state {
		case stateBeginLine:
			switch c {
			case '.':
				state = stateDot
			case '\r':
				state = stateCR
			default:
				state = stateData
			}
		case stateDot:
			state = stateData
			if c == '\r' {
				state = stateDotCR
			}
		case stateDotCR:
			if c == '\n' {
				return i + 1
			}
			state = stateData
		case stateCR:
			state = stateData
			if c == '\n' {
				state = stateBeginLine
			}
		case stateData:
			if c == '\r' {
				state = stateCR
			}
		}
	}
	return -1
}

// TestDataEndAgreesWithGoSMTP: the gate's unstuffer (datareader.go) finds
// the end of every message where go-smtp's reader does, however the
// message is cut into pieces, whether it copies the message out or skips
// it.
func TestDataEndAgreesWithGoSMTP(t *testing.T) {
	const alphabet = ".\r\na"
	msg := make([]byte, 10)
	for n := range 1 << 20 { // every string of 10 octets over the alphabet
		k := n
		for i := range msg {
			msg[i] = alphabet[k%len(alphabet)]
			k /= len(alphabet)
		}
		want := goSMTPDataEnd(msg)
		for _, cut := range []int{1, 3, len(msg)} {
			for _, discard := range []bool{true, false} {
				var u unstuffer
				out := make([]byte, len(msg))
				got := -1
				for at := 0; at < len(msg) && got < 0; at += cut {
					nin, _ := u.unstuff(msg[at:min(at+cut, len(msg))], out, discard)
					if u.ended() {
						got = at + nin
					}
				}
				if got != want {
					t.Fatalf("%q in pieces of %d (discard %v): the unstuffer ends it at %d; go-smtp %d", msg, cut, discard, got, want)
				}
			}
		}
	}
}
