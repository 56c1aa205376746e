package relay

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// smugglingSeparators are the ways a client may try to end a message
// early at a lenient server behind relay (SMTP smuggling, 2023): each is
// a "." line with other line endings than CRLF on either side. go-smtp
// ends DATA only at <CR><LF>.<CR><LF>; relay then makes every line ending
// CRLF (crlf.go), and the upstream client dot-stuffs, so what follows the
// separator stays part of the same message.
var smugglingSeparators = []struct{ name, sep string }{
	{"LF.LF", "\n.\n"},
	{"CR.CR", "\r.\r"},
	{"LF.CRLF", "\n.\r\n"},
	{"CRLF.LF", "\r\n.\n"},
	{"CRLF.CR", "\r\n.\r"},
	{"CR.LF", "\r.\n"},
	{"LF.CR", "\n.\r"},
	{"CR.CRLF", "\r.\r\n"},
	{"CRLF.NUL.CRLF", "\r\n.\x00\r\n"},
	{"CRLF.space.CRLF", "\r\n. \r\n"},
	{"CRCRLF.CRLF", "\r\r\n.\r\n"},
	{"LF.LF at the start", "\n.\n"}, // see smugglingMessage
}

const smuggledEnvelope = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond message\r\n"

func smugglingMessage(i int, name, sep string) string {
	if strings.HasSuffix(name, "at the start") {
		return fmt.Sprintf("Subject: smuggle %d\r\n\r\n", i) + sep[1:] + smuggledEnvelope
	}
	return fmt.Sprintf("Subject: smuggle %d\r\n\r\nfirst line", i) + sep + smuggledEnvelope
}

// wireRecorder is a TCP proxy on 127.0.0.1 in front of an upstream that
// records what relay sends, byte for byte, before any SMTP parsing.
type wireRecorder struct {
	port int
	mu   sync.Mutex
	sent []byte
}

func startWireRecorder(t *testing.T, target string) *wireRecorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	w := &wireRecorder{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for i := 0; i < 100; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go func() { io.Copy(c, up); c.Close() }()
			go func() { io.Copy(io.MultiWriter(w, up), c); up.Close() }() // recorded before the upstream can answer
		}
	}()
	return w
}

func (w *wireRecorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, p...)
	return len(p), nil
}

func (w *wireRecorder) Sent() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.sent)
}

// bareLineEnding returns the offset of a CR not followed by LF or an LF
// not preceded by CR, or -1.
func bareLineEnding(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 == len(s) || s[i+1] != '\n' {
				return i
			}
		case '\n':
			if i == 0 || s[i-1] != '\r' {
				return i
			}
		}
	}
	return -1
}

// sendSmuggling sends one DATA per separator, then one BDAT message with
// a real <CRLF>.<CRLF> inside, on one session, and returns how many
// messages it sent.
func sendSmuggling(t *testing.T, addr string) int {
	c := dial(t, addr)
	c.ehlo()
	n := 0
	for i, s := range smugglingSeparators {
		c.must("MAIL FROM:<app@example.com>", 250, "")
		c.must("RCPT TO:<ops@example.com>", 250, "")
		if code, last := c.data(smugglingMessage(i, s.name, s.sep) + "\r\n"); code != 250 {
			t.Fatalf("%s: DATA → %q; want 250", s.name, last)
		}
		n++
	}
	// BDAT carries its bytes as they are: a <CRLF>.<CRLF> in a chunk is
	// data, which relay must dot-stuff when it sends the message on.
	body := "Subject: smuggle bdat\r\n\r\nfirst\r\n.\r\n" + smuggledEnvelope + "bare\nlf\n.\n"
	c.must("MAIL FROM:<app@example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	c.send(fmt.Sprintf("BDAT %d LAST", len(body)))
	c.conn.Write([]byte(body))
	if code, lines := c.reply(); code != 250 {
		t.Fatalf("BDAT → %q; want 250", lines)
	}
	n++
	c.must("QUIT", 221, "")
	return n
}

// TestSMTPSmuggling: whatever line endings a client puts around a "."
// inside DATA (or BDAT), relay passes on exactly one message per
// message the client sent, with CRLF line endings only, through a real
// go-smtp upstream (whose received bytes are also checked on the wire, as
// a lenient server would read them) and into a Maildir.
func TestSMTPSmuggling(t *testing.T) {
	// Upstream with DATA (dot-stuffing on the wire) and with BDAT
	// (CHUNKING: the message as it is, in counted chunks).
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct chunking=%v", chunking), func(t *testing.T) {
			var hide []string
			if !chunking {
				hide = []string{"CHUNKING"}
			}
			u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Hide: hide})
			wire := startWireRecorder(t, u.Addr)
			cfg := upstreamConfig(t, u, `default_profile = "up"`)
			cfg = strings.Replace(cfg, fmt.Sprintf("port = %d", u.Port), fmt.Sprintf("port = %d", wire.port), 1)
			h := startHarness(t, cfg, Options{})
			sent := sendSmuggling(t, h.addr)

			msgs := u.Messages()
			if len(msgs) != sent {
				t.Fatalf("upstream got %d messages for %d sent", len(msgs), sent)
			}
			for i, m := range msgs {
				data := string(m.Data)
				if m.From != "app@example.com" || strings.Join(m.To, ",") != "ops@example.com" {
					t.Errorf("message %d: envelope %s → %v; want app@example.com → ops@example.com", i, m.From, m.To)
				}
				if at := bareLineEnding(data); at >= 0 {
					t.Errorf("message %d has a bare line ending at %d: %q", i, at, data)
				}
				if !strings.Contains(data, "MAIL FROM:<evil@attacker.example>\r\n") || !strings.Contains(data, "second message\r\n") {
					t.Errorf("message %d lost the text after its separator: %q", i, data)
				}
			}
			// On the wire: CRLF only, and <CRLF>.<CRLF> only where a message
			// ends. (The wire holds only the client's side of the dialogue.)
			raw := wire.Sent()
			if at := bareLineEnding(raw); at >= 0 {
				t.Errorf("relay sent a bare line ending upstream at %d: %q", at, raw[max(0, at-40):min(len(raw), at+40)])
			}
			if chunking {
				if n := strings.Count(raw, " LAST\r\n"); n != sent {
					t.Errorf("relay sent %d last chunks for %d messages", n, sent)
				}
				return
			}
			if ends := strings.Count(raw, "\r\n.\r\n"); ends != sent {
				t.Errorf("relay sent %d end-of-data lines for %d messages:\n%s", ends, sent, raw)
			}
			if strings.Count(raw, "DATA\r\n") != sent+sent { // the command, and the smuggled text in each body
				t.Errorf("relay sent DATA %d times; want %d commands and %d in bodies", strings.Count(raw, "DATA\r\n"), sent, sent)
			}
		})
	}
	t.Run("maildir", func(t *testing.T) {
		cfg, dir := maildirConfig(t, "")
		h := startHarness(t, cfg, Options{})
		sent := sendSmuggling(t, h.addr)
		msgs := maildirMessages(t, dir)
		if len(msgs) != sent {
			t.Fatalf("the Maildir holds %d messages for %d sent", len(msgs), sent)
		}
		for i, m := range msgs {
			// A Maildir holds LF line endings: a CR left means a bare CR
			// got through.
			if strings.Contains(m, "\r") || !strings.Contains(m, "MAIL FROM:<evil@attacker.example>\n") {
				t.Errorf("message %d: %q", i, m)
			}
			if !strings.HasPrefix(m, "Return-Path: <app@example.com>\n") {
				t.Errorf("message %d has another envelope: %q", i, m[:min(len(m), 60)])
			}
		}
	})
}
