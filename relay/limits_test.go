package relay

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

func TestHeaderLimitReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int64
		tooBig  bool
		wantOut string // what is read before the error, if tooBig
	}{
		{"CRLF header within", "Subject: x\r\n\r\n" + strings.Repeat("b", 100), 14, false, ""},
		{"CRLF header one over", "Subject: xyz\r\n\r\nbody", 13, true, "Subject: xyz\r"},
		{"LF blank line ends it", "Subject: x\n\n" + strings.Repeat("b", 100), 12, false, ""},
		{"CR blank line ends it", "Subject: x\r\r" + strings.Repeat("b", 100), 12, false, ""},
		{"LF then CRLF ends it", "Subject: x\n\r\n" + strings.Repeat("b", 100), 13, false, ""},
		{"no blank line at all", strings.Repeat("X-Long: yyyyyyyy\r\n", 100), 1000, true, strings.Repeat("X-Long: yyyyyyyy\r\n", 100)[:1000]},
		{"one endless line", strings.Repeat("z", 5000), 4096, true, strings.Repeat("z", 4096)},
		{"empty header section", "\r\n" + strings.Repeat("b", 100), 2, false, ""},
		{"folded lines are header", "Subject: a\r\n b\r\n c\r\n\r\n", 19, true, "Subject: a\r\n b\r\n c\r"},
		{"the empty line is not counted", "Subject: a\r\n b\r\n c\r\n\r\nbody", 20, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time, so that state carries across reads.
			r := newHeaderLimitReader(iotestOneByte(strings.NewReader(tt.in)), tt.max)
			out, err := io.ReadAll(r)
			var se *smtp.SMTPError
			if tt.tooBig {
				if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
					t.Fatalf("ReadAll() error = %v; want 552 5.3.4", err)
				}
				if string(out) != tt.wantOut {
					t.Errorf("read %q before the error; want %q", out, tt.wantOut)
				}
				return
			}
			if err != nil || string(out) != tt.in {
				t.Fatalf("ReadAll() = %q, %v; want the input unchanged", out, err)
			}
		})
	}
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func iotestOneByte(r io.Reader) io.Reader { return oneByteReader{r} }

// TestMaxHeaderBytes: a header section past server.max_header_bytes gets
// 552 5.3.4, the upstream gets nothing, and the session goes on.
func TestMaxHeaderBytes(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"
max_header_bytes = 1024`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	big := "Subject: big\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("f", 60)+"\r\n", 20) + "\r\nbody\r\n"
	code, last := c.data(big)
	if code != 552 || !strings.HasPrefix(last, "552 5.3.4 ") || !strings.Contains(last, "header") {
		t.Fatalf("DATA with a 1.4 kB header → %q; want 552 5.3.4 naming the header", last)
	}
	// A big body under a small header is fine.
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data("Subject: small\r\n\r\n" + strings.Repeat("body line\r\n", 1000)); code != 250 {
		t.Fatalf("DATA with a small header → %q", last)
	}
	msgs := u.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "Subject: small") {
		t.Fatalf("upstream got %d messages; want only the small-header one", len(msgs))
	}
}

// TestMessageTooBigEvenWhenSIZELies: SIZE= is a promise the client may
// break; the limit holds on what arrives.
func TestMessageTooBigEvenWhenSIZELies(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"
max_message_bytes = 10000`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com> SIZE=20000", 552, "5.3.4")
	c.must("MAIL FROM:<a@example.com> SIZE=100", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	code, last := c.data("Subject: liar\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 5000))
	if code != 552 || !strings.HasPrefix(last, "552 5.3.4 ") {
		t.Fatalf("DATA of 90 kB after SIZE=100 → %q; want 552 5.3.4", last)
	}
	if n := len(u.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages; want none", n)
	}
	normalMessage(c, "a@example.com")
	if n := len(u.Messages()); n != 1 {
		t.Fatalf("upstream got %d messages; want the normal one", n)
	}
}

// TestMessageOfExactlyMaxBytes: max_message_bytes is the largest message
// relay accepts, as its SIZE keyword says (RFC 1870 §4): a message of
// exactly that many octets goes through by DATA (dot-stuffed) and by
// BDAT, whole; one octet more gets
// 552 5.3.4, and the session goes on.
func TestMessageOfExactlyMaxBytes(t *testing.T) {
	const max = 65536
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, fmt.Sprintf("default_profile = \"up\"\nmax_message_bytes = %d", max)), Options{})
	// message is a message of n octets whose lines start with dots, so
	// that the client sends more than n octets of DATA.
	message := func(n int) string {
		head := "Subject: exactly max_message_bytes\r\n\r\n"
		line := ".." + strings.Repeat("x", 60) + "\r\n" // 64 octets
		body := strings.Repeat(line, (n-len(head))/len(line))
		return head + body + strings.Repeat("y", n-len(head)-len(body)-2) + "\r\n"
	}
	stuff := func(m string) string { return strings.ReplaceAll(m, "\r\n.", "\r\n..") }
	c := dial(t, h.addr)
	c.ehlo()
	delivered := 0
	for _, tt := range []struct {
		name string
		size int
		send func(m string) (int, string)
	}{
		{"DATA", max, func(m string) (int, string) { return c.data(stuff(m)) }},
		{"DATA", max + 1, func(m string) (int, string) { return c.data(stuff(m)) }},
		{"BDAT", max, func(m string) (int, string) {
			c.send(fmt.Sprintf("BDAT %d LAST", len(m)))
			if _, err := c.conn.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
			code, lines := c.reply()
			return code, lines[len(lines)-1]
		}},
	} {
		m := message(tt.size)
		if len(m) != tt.size {
			t.Fatalf("message of %d octets; want %d", len(m), tt.size)
		}
		if tt.size > max {
			c.must("MAIL FROM:<a@example.com>", 250, "") // SIZE would refuse it here
		} else {
			c.must(fmt.Sprintf("MAIL FROM:<a@example.com> SIZE=%d", tt.size), 250, "")
		}
		c.must("RCPT TO:<b@example.com>", 250, "")
		code, last := tt.send(m)
		if tt.size > max {
			if code != 552 || !strings.HasPrefix(last, "552 5.3.4 ") {
				t.Fatalf("%s of %d octets (max_message_bytes %d) → %q; want 552 5.3.4", tt.name, tt.size, max, last)
			}
			continue
		}
		if code != 250 {
			t.Fatalf("%s of exactly max_message_bytes (%d octets) → %q; want 250", tt.name, tt.size, last)
		}
		delivered++
		got := u.WaitMessages(t, delivered, 10*time.Second)[delivered-1]
		if !strings.HasSuffix(string(got.Data), m) {
			t.Fatalf("%s of %d octets: upstream got %d octets, not ending with the message", tt.name, tt.size, len(got.Data))
		}
	}
	c.must("NOOP", 250, "")
	if n := len(u.Messages()); n != delivered {
		t.Fatalf("upstream got %d messages; want %d", n, delivered)
	}
}

// TestCommandLineLength: RFC 5321 §4.5.3.1 limits, as go-smtp applies
// them (2000 octets): a long EHLO under the limit is answered, a line past
// it closes the connection with 500, and the server goes on.
func TestCommandLineLength(t *testing.T) {
	cfg, _ := maildirConfig(t, "")
	h := startHarness(t, cfg, Options{})
	c := dial(t, h.addr)
	c.must("EHLO "+strings.Repeat("a", 1900), 250, "")
	c.send("NOOP " + strings.Repeat("x", 2100))
	code, lines := c.reply()
	if code != 500 {
		t.Fatalf("2100-byte command → %q; want 500", lines)
	}
	if rest := readAll(t, c.conn); len(rest) != 1 || rest[0] != "" {
		t.Fatalf("after a too long line the server sent %q; want it to close", rest)
	}
	normalMessage(dial(t, h.addr), "a@example.com")
}

// TestIdleClientDropped: a client that says nothing gets 421 4.4.2 after
// read_timeout.
func TestIdleClientDropped(t *testing.T) {
	cfg, _ := maildirConfig(t, `read_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	c := dial(t, h.addr)
	lines := readAll(t, c.conn)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Fatalf("idle client got %q; want 421 4.4.2 and the end", lines)
	}
	h.waitIdle(t)
}

// drip writes data one byte every interval until it is all written or a
// write fails, and reports how many bytes it wrote.
func drip(conn net.Conn, data string, interval time.Duration) <-chan int {
	done := make(chan int, 1)
	go func() {
		n := 0
		for ; n < len(data); n++ {
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write([]byte{data[n]}); err != nil {
				break
			}
			time.Sleep(interval)
		}
		done <- n
	}()
	return done
}

// TestSlowDrip: clients that trickle a byte every 100 ms, well within
// read_timeout (2 s), are still dropped with 421 4.4.2 in a bounded time:
// in commands by the session limit, in DATA by the message limit, in one
// endless line by read_timeout. Scaled down from "one byte a second
// against read_timeout 60s". Each case has only its own limit short, so
// that it fails if that limit does not hold.
func TestSlowDrip(t *testing.T) {
	const interval = 100 * time.Millisecond
	const maxBytes = 300 // 30 s of dripping: far past every limit
	long := time.Hour
	tests := []struct {
		name   string
		limits Limits
		before []string // commands sent normally first, each answered
		drip   string
		// checkLines checks the replies to the dripped bytes.
		checkLines func(t *testing.T, lines []string)
	}{
		{"commands", Limits{SessionTimeout: 3 * time.Second, DataTimeout: long}, nil, strings.Repeat("NOOP\r\n", maxBytes/6),
			func(t *testing.T, lines []string) {
				if !strings.HasPrefix(lines[0], "250 ") {
					t.Errorf("the first NOOP got %q; want 250 (the client was not idle)", lines[0])
				}
			}},
		{"data", Limits{SessionTimeout: long, DataTimeout: 3 * time.Second}, []string{"EHLO drip", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"}, "Subject: drip\r\n\r\n" + strings.Repeat("x", maxBytes),
			func(t *testing.T, lines []string) {
				// One reply: the 421 says the connection closes, so
				// nothing follows it (not go-smtp's own "Idle timeout"
				// too), and the rest of the message is never read as
				// commands.
				if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
					t.Errorf("the message got %q; want one 421 4.4.2", lines)
				}
			}},
		// At the timeout, go-smtp (through bufio.Reader.ReadLine) still
		// answers the part of the line it has as a command; then the
		// connection ends.
		{"one endless line", Limits{SessionTimeout: long, DataTimeout: long}, nil, "NOOP" + strings.Repeat(" x", maxBytes/2),
			func(t *testing.T, lines []string) {
				if len(lines) > 2 {
					t.Errorf("one line got %q", lines)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
			h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"
read_timeout = "2s"`), Options{Limits: tt.limits})
			c := dial(t, h.addr)
			for _, cmd := range tt.before {
				c.send(cmd)
				if code, lines := c.reply(); code >= 400 {
					t.Fatalf("%s → %q", cmd, lines)
				}
			}
			wrote := drip(c.conn, tt.drip, interval)
			lines := readAll(t, c.conn)
			c.conn.Close()
			n := <-wrote
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "421 4.4.2 ") || n >= len(tt.drip) {
				t.Fatalf("after %d of %d bytes the server said %q; want to be dropped with 421 4.4.2", n, len(tt.drip), lines)
			}
			tt.checkLines(t, lines)
			h.waitIdle(t)
			if n := len(u.Messages()); n != 0 {
				t.Fatalf("upstream got %d messages from a dripping client", n)
			}
			normalMessage(dial(t, h.addr), "a@example.com")
		})
	}
}

// TestSlowButSteadyMessageIsAccepted: within DATA, read_timeout applies to
// each read, not to the whole message, so a message that takes longer
// than read_timeout but keeps coming is received.
func TestSlowButSteadyMessageIsAccepted(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"
read_timeout = "1s"`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	c.must("DATA", 354, "")
	c.conn.Write([]byte("Subject: steady\r\n\r\n"))
	for i := 0; i < 25; i++ { // 2.5 s in all
		time.Sleep(100 * time.Millisecond)
		c.conn.Write([]byte("line\r\n"))
	}
	c.conn.Write([]byte(".\r\n"))
	if code, lines := c.reply(); code != 250 {
		t.Fatalf("a steady message of 2.5 s → %q; want 250", lines)
	}
	if n := len(u.Messages()); n != 1 {
		t.Fatalf("upstream got %d messages; want 1", n)
	}
}

// TestClientThatDoesNotReadIsDropped: a client that pipelines commands
// and never reads the replies is dropped once a reply has waited
// write_timeout, instead of being served a command per write_timeout.
func TestClientThatDoesNotReadIsDropped(t *testing.T) {
	cfg, _ := maildirConfig(t, `write_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// EHLO has a long reply: 32 MB of replies for 1.6 MB of commands,
	// more than loopback's socket buffers hold.
	go func() {
		conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		w := bufio.NewWriterSize(conn, 64<<10)
		for i := 0; i < 200_000; i++ {
			if _, err := w.WriteString("EHLO x\r\n"); err != nil {
				return
			}
		}
		w.Flush()
	}()
	h.waitIdle(t)
}

// TestConnectionFlood: past max_connections_per_client, and past
// max_connections, new connections get 421 4.7.0; the ones admitted are
// served, and the server serves again once they leave.
func TestConnectionFlood(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  int // connections admitted
	}{
		{"per client", "max_connections_per_client = 5", 5},
		{"in total", "max_connections = 8\nmax_connections_per_client = 100", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := maildirConfig(t, tt.extra)
			h := startHarness(t, cfg, Options{})
			var admitted []net.Conn
			refused := 0
			for i := 0; i < 60; i++ {
				conn, err := net.Dial("tcp", h.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				line, err := bufio.NewReader(conn).ReadString('\n')
				switch {
				case strings.HasPrefix(line, "220 "):
					admitted = append(admitted, conn)
				case strings.HasPrefix(line, "421 4.7.0 "):
					refused++
				default:
					t.Fatalf("connection %d got %q, %v; want 220 or 421 4.7.0", i, line, err)
				}
			}
			if len(admitted) != tt.want || refused != 60-tt.want {
				t.Fatalf("%d admitted and %d refused; want %d and %d", len(admitted), refused, tt.want, 60-tt.want)
			}
			// The admitted ones are served.
			for _, conn := range admitted {
				conn.Write([]byte("NOOP\r\n"))
			}
			for i, conn := range admitted {
				r := bufio.NewReader(conn)
				if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "250 ") {
					t.Fatalf("admitted connection %d: NOOP → %q", i, line)
				}
				conn.Close()
			}
			h.waitIdle(t)
			normalMessage(dial(t, h.addr), "a@example.com")
		})
	}
}

// TestCutOffMessageIsNotPassedOn: a client whose connection ends in the
// middle of a message, in DATA or in a BDAT chunk, gets no 250 and the
// upstream gets nothing.
func TestCutOffMessageIsNotPassedOn(t *testing.T) {
	for _, tt := range []struct{ name, cmd, body string }{
		{"DATA", "DATA", "Subject: cut\r\n\r\nonly part"},
		{"BDAT", "BDAT 1000 LAST", "Subject: cut\r\n\r\nonly part"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
			h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
			c := dial(t, h.addr)
			c.ehlo()
			c.must("MAIL FROM:<a@example.com>", 250, "")
			c.must("RCPT TO:<b@example.com>", 250, "")
			c.send(tt.cmd)
			if tt.cmd == "DATA" {
				c.expect(354)
			}
			c.conn.Write([]byte(tt.body))
			c.conn.(*net.TCPConn).CloseWrite()
			lines := readAll(t, c.conn)
			if len(lines) == 0 || !strings.HasPrefix(lines[0], "451 4.4.2 ") {
				t.Errorf("a message cut off by the end of the connection got %q; want 451 4.4.2", lines)
			}
			h.waitIdle(t)
			if n := len(u.Messages()); n != 0 {
				t.Fatalf("upstream got %d messages cut short", n)
			}
		})
	}
}

// TestDeadlinesUnderTLS: relay's TLS lies beneath its deadlineConn, which
// is go-smtp's connection on every listener; the session finds it and
// learns from it whether the connection is TLS.
func TestDeadlinesUnderTLS(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	plain := newDeadlineConn(a, time.Second, Limits{}.withDefaults(), time.Now())
	if got := deadlinesOf(plain); got != plain {
		t.Fatalf("deadlinesOf(dc) = %p; want %p", got, plain)
	}
	if _, ok := plain.TLSConnectionState(); ok {
		t.Fatal("a connection in the clear says it is TLS")
	}
	secure := newDeadlineConn(tls.Server(a, &tls.Config{}), time.Second, Limits{}.withDefaults(), time.Now())
	if _, ok := secure.TLSConnectionState(); !ok {
		t.Fatal("a deadlineConn over a *tls.Conn says it is not TLS")
	}
}

// TestReply421EndsConnection: a 421 relay gives (here an upstream's 421
// to RCPT, passed on in direct mode) closes the connection, RFC 5321
// §3.8: nothing follows it, and relay reads no further command.
func TestReply421EndsConnection(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(string) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections, closing"}
	}})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.send("RCPT TO:<b@example.com>")
	c.send("NOOP") // pipelined: must not be answered
	if lines := readAll(t, c.conn); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.7.0 ") {
		t.Fatalf("after RCPT the server said %q; want one 421 4.7.0 and the end of the connection", lines)
	}
}

// TestBDAT421BetweenChunks: a BDAT message's Data runs in a goroutine of
// its own, and may fail with a 421 (here the upstream's answer to DATA)
// while go-smtp already waits for the next chunk. go-smtp answers that
// chunk with the 421, once it has read it: the client must get the 421,
// not a permanent 554 for a read relay failed on purpose, nor a
// connection closed without a reply.
func TestBDAT421BetweenChunks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	release := make(chan struct{})
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		io.WriteString(conn, "220 fake upstream\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch strings.ToUpper(strings.Fields(line + " x")[0]) {
			case "EHLO", "HELO":
				io.WriteString(conn, "250 fake\r\n")
			case "DATA":
				<-release
				io.WriteString(conn, "421 4.3.2 Going down\r\n")
				return
			case "QUIT":
				io.WriteString(conn, "221 bye\r\n")
				return
			default:
				io.WriteString(conn, "250 ok\r\n")
			}
		}
	}()
	h := startHarness(t, directConfig(t, ln.Addr().(*net.TCPAddr).Port), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	c.must("BDAT 0", 250, "") // go-smtp now waits for the next chunk
	close(release)
	testpeer.WaitFor(t, "the upstream's 421 to be logged", 10*time.Second, func() bool {
		return strings.Contains(h.logs.String(), "421 4.3.2 Going down")
	})
	c.send("BDAT 5 LAST")
	c.conn.Write([]byte("hello"))
	if lines := readAll(t, c.conn); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") {
		t.Fatalf("after the upstream's 421 the last chunk got %q; want one 421 and the end of the connection", lines)
	}
}

// TestBDATChunkTimeout: a client that stops in the middle of a BDAT chunk
// gets 421 4.4.2 when read_timeout passes, and the connection ends: a
// timeout may clear up, so never go-smtp's permanent "554 5.0.0
// transaction failed: i/o timeout", on which a client drops the message.
func TestBDATChunkTimeout(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"
read_timeout = "1s"`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	c.send("BDAT 100 LAST")
	c.conn.Write([]byte("Subject: cut\r\n\r\nten"))
	if lines := readAll(t, c.conn); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
		t.Fatalf("a chunk cut off by the read timeout got %q; want one 421 4.4.2 and the end", lines)
	}
	if n := len(u.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages; want none", n)
	}
}
