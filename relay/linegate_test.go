package relay

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// gateSource feeds a gate from r, then ends with err.
func gateSource(r io.Reader, err error) func([]byte) (int, error) {
	return func(p []byte) (int, error) {
		n, e := r.Read(p)
		if e == io.EOF {
			e = err
		}
		return n, e
	}
}

// readGate reads everything the gate lets through in reads of size n, as
// go-smtp and relay's session would: after a DATA line it tells the gate
// of a 354, the session reads the message (readMessage, unstuffed: the
// sessions here have no dot lines), and go-smtp reads the end of it.
func readGate(g *lineGate, src func([]byte) (int, error), n int) ([]byte, error) {
	var out []byte
	p := make([]byte, n)
	for range 1 << 20 {
		k, err := g.read(p, src)
		out = append(out, p[:k]...)
		if bytes.HasSuffix(out, []byte("DATA\r\n")) && err == nil {
			g.replied([]byte("354 go ahead\r\n"))
			if !g.claimMessage() {
				panic("no message to claim after a 354")
			}
			for range 1 << 20 {
				k, err := g.readMessage(p, src)
				out = append(out, p[:k]...)
				if err != nil {
					break
				}
			}
		}
		if err != nil {
			return out, err
		}
	}
	panic("unbounded")
}

// TestLineGatePassesSessions: a pipelined session with a BDAT chunk that
// ends without a line break, a DATA message with a 5,000-octet line, and
// commands after it, goes through unchanged whatever the sizes of the
// reads on either side.
func TestLineGatePassesSessions(t *testing.T) {
	session := "EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 7 LAST\r\nab\r\ncdQUIT\r\n" +
		"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + strings.Repeat("y", 5000) + "\r\n" + strings.Repeat("z", 40<<10) + "\r\n.\r\n" +
		"NOOP " + strings.Repeat("n", 1993) + "\r\nQUIT\r\n"
	for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader, iotest.HalfReader} {
		for _, n := range []int{1, 3, 4096, 64 << 10} {
			g := newLineGate()
			out, err := readGate(g, gateSource(wrap(strings.NewReader(session)), io.EOF), n)
			if err != io.EOF || string(out) != session {
				t.Fatalf("reads of %d: got %d bytes (differing at %d) and %v; want the %d sent and EOF", n, len(out), firstDiffString(string(out), session), err, len(session))
			}
		}
	}
}

func firstDiffString(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestLineGateDropsCutCommands: a command cut by a timeout or a hang-up
// never reaches go-smtp; only the error does. Neither does a message:
// relay's session reads it, with the error at its end.
func TestLineGateDropsCutCommands(t *testing.T) {
	for _, end := range []error{os.ErrDeadlineExceeded, io.EOF} {
		for in, want := range map[string]string{
			"NOOP\r\nEHL":                      "NOOP\r\n",
			"DATA\r\nline\r\npart":             "DATA\r\nline\r\npart", // a message cut off: the session has it all, go-smtp the error
			"BDAT 9 LAST\r\nabc":               "BDAT 9 LAST\r\nabc",
			"DATA\r\nx\r\n.\r\nMAIL FROM:<a@b": "DATA\r\nx\r\n.\r\n",
		} {
			wantErr := end
			if strings.HasPrefix(in, "BDAT") && end == os.ErrDeadlineExceeded {
				// A chunk's timeout is an *smtp.SMTPError, which go-smtp
				// answers as it is (a 421), never with its 554.
				wantErr = errDataTimeout
			}
			g := newLineGate()
			out, err := readGate(g, gateSource(iotest.OneByteReader(strings.NewReader(in)), end), 4096)
			if string(out) != want || err != wantErr {
				t.Errorf("%q: got %q, %v; want %q, then %v", in, out, err, want, wantErr)
			}
			if n, err := g.read(make([]byte, 10), gateSource(strings.NewReader(""), io.EOF)); n != 0 || err != wantErr {
				t.Errorf("%q: a read after the end = %d, %v; want 0, %v again", in, n, err, wantErr)
			}
		}
	}
}

// TestLineGateRefusesLongCommands: 2000 octets with the CRLF pass, one
// more is refused with go-smtp's ErrTooLongLine (500 5.4.0), with or
// without a line break in sight.
func TestLineGateRefusesLongCommands(t *testing.T) {
	for in, want := range map[string]error{
		"NOOP " + strings.Repeat("x", 1993) + "\r\n": io.EOF,
		"NOOP " + strings.Repeat("x", 1994) + "\r\n": smtp.ErrTooLongLine,
		"NOOP " + strings.Repeat("x", 5000):          smtp.ErrTooLongLine,
	} {
		g := newLineGate()
		out, err := readGate(g, gateSource(strings.NewReader(in), io.EOF), 4096)
		if !errors.Is(err, want) || (want != io.EOF && len(out) > 0) {
			t.Errorf("%d octets: handed on %d and %v; want %v", len(in), len(out), err, want)
		}
	}
}

// TestLongLineThroughRelayIntoPostfix: a client's 5,000-character body
// line goes through relay and a private Postfix into smtp-sink, folded at
// 998 octets with CRLF SP and nothing lost (it used to cost the message:
// 451 4.4.2, then 500 5.4.0 to the next command).
func TestLongLineThroughRelayIntoPostfix(t *testing.T) {
	sink := testpeer.StartSink(t)
	pf := testpeer.StartPostfix(t, sink.Addr)
	_, port, _ := strings.Cut(pf.Addr, ":")
	p, _ := strconv.Atoi(port)
	h := startHarness(t, upstreamConfig(t, &testpeer.Upstream{Port: p}, `default_profile = "up"`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<app@example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	long := strings.Repeat("0123456789", 500)
	if code, last := c.data("Subject: long line\r\n\r\n" + long + "\r\nafter\r\n"); code != 250 {
		t.Fatalf("DATA → %q; want 250", last)
	}
	c.must("NOOP", 250, "")
	msgs := sink.Messages(t, 1, 30*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("smtp-sink got %d messages; want 1\n%s", len(msgs), pf.Log())
	}
	_, body, _ := bytes.Cut(msgs[0], []byte("\n\n"))
	want := long[:998]
	for rest := long[998:]; rest != ""; rest = rest[min(997, len(rest)):] {
		want += "\n " + rest[:min(997, len(rest))] // 1 + 997 octets a line
	}
	want += "\nafter\n"
	if string(body) != want {
		t.Fatalf("Postfix passed on the body %q; want it folded at 998 octets:\n%q", body, want)
	}
}

// TestTimeoutMidCommandGetsOnly421: a command cut by read_timeout is not
// executed: the client gets the 421 alone.
func TestTimeoutMidCommandGetsOnly421(t *testing.T) {
	cfg, _ := maildirConfig(t, `read_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.conn.Write([]byte("EHL"))
	lines := readAll(t, c.conn)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Fatalf("after a cut command the server said %q; want only 421 4.4.2", lines)
	}
}
