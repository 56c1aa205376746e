package relay

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// tlsWay is one way into TLS; open returns a client whose TLS is up and
// who has yet to send EHLO inside it.
type tlsWay struct {
	name string
	open func(t *testing.T) *client
}

// tlsWays serves h on smtps_listen too and returns both ways into TLS:
// STARTTLS on the plain listener (after an EHLO in the clear), and
// implicit TLS.
func tlsWays(t *testing.T, h *harness) []tlsWay {
	t.Helper()
	smtpsAddr, _ := h.serveTLS(t)
	pki := testpeer.TestPKI(t)
	return []tlsWay{
		{"STARTTLS", func(t *testing.T) *client {
			c := dial(t, h.addr)
			c.ehlo()
			c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
			return c
		}},
		{"smtps", func(t *testing.T) *client { return dialTLS(t, smtpsAddr) }},
	}
}

// TestTLSCutCommandGetsOnly421: inside TLS too, a command cut by
// read_timeout is dropped, never executed: the client gets the 421 alone
// (go-smtp would answer "EHL" with 501 and "RSET" with 250).
func TestTLSCutCommandGetsOnly421(t *testing.T) {
	cfg, _ := smtpsConfig(t, `read_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	for _, way := range tlsWays(t, h) {
		for _, cut := range []string{"EHL", "RSET"} {
			t.Run(way.name+" "+cut, func(t *testing.T) {
				c := way.open(t)
				c.ehlo()
				c.conn.Write([]byte(cut))
				lines := readAll(t, c.conn)
				if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2 ") {
					t.Fatalf("after a cut %q the server said %q; want only 421 4.4.2", cut, lines)
				}
			})
		}
	}
	h.waitIdle(t)
}

// TestTLSCommandLineLimit: inside TLS a command line past 2000 octets gets
// 500 5.4.0 and the end of the connection, as in the clear, and the server
// reads no further: a line without end is refused long before the client
// has sent its 32 MiB (go-smtp's own reading of a TLS session held up to
// twice max_message_bytes plus 1 MiB, 51 MiB by default).
func TestTLSCommandLineLimit(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	for _, way := range tlsWays(t, h) {
		t.Run(way.name+" 2001 octets", func(t *testing.T) {
			c := way.open(t)
			c.ehlo()
			c.must("NOOP "+strings.Repeat("x", 1993), 250, "2.0.0") // 2000 with the CRLF
			c.send("NOOP " + strings.Repeat("x", 1994))
			if code, lines := c.reply(); code != 500 || !strings.HasPrefix(lines[0], "500 5.4.0 ") {
				t.Fatalf("a 2001-octet command → %q; want 500 5.4.0", lines)
			}
			expectClosed(t, c)
		})
		t.Run(way.name+" endless", func(t *testing.T) {
			c := way.open(t)
			c.ehlo()
			const total, piece = 32 << 20, 64 << 10
			var written atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				chunk := []byte("NOOP " + strings.Repeat("x", piece-5))
				for written.Load() < total {
					c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					n, err := c.conn.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
					chunk[0] = 'x'
				}
			}()
			code, lines := c.reply()
			at := written.Load()
			<-done
			if code != 500 || !strings.HasPrefix(lines[0], "500 5.4.0 ") {
				t.Fatalf("an endless command line → %q; want 500 5.4.0", lines)
			}
			// What the client wrote before the reply came sits at most in
			// the loopback socket buffers (a few MiB).
			if at >= total/2 {
				t.Fatalf("the 500 came after the client wrote %d octets; want it after at most the socket buffers", at)
			}
		})
	}
	h.waitIdle(t)
}

// TestTLSLongBodyLineDelivered: inside TLS a message line is bounded only
// by max_message_bytes: a 5,000-character line arrives whole, received
// with ESMTPS.
func TestTLSLongBodyLineDelivered(t *testing.T) {
	cfg, dir := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	long := strings.Repeat("0123456789", 500)
	for i, way := range tlsWays(t, h) {
		t.Run(way.name, func(t *testing.T) {
			c := way.open(t)
			c.ehlo()
			c.must("MAIL FROM:<app@example.com>", 250, "")
			c.must("RCPT TO:<ops@example.com>", 250, "")
			if code, last := c.data("Subject: long line\r\n\r\n" + long + "\r\nafter\r\n"); code != 250 {
				t.Fatalf("DATA → %q; want 250", last)
			}
			c.must("NOOP", 250, "")
			msgs := maildirMessages(t, dir)
			if len(msgs) != i+1 {
				t.Fatalf("maildir holds %d messages; want %d", len(msgs), i+1)
			}
			var m string
			for _, msg := range msgs {
				if strings.Count(msg, "with ESMTPS id") == 1 && strings.HasSuffix(msg, "\n\n"+long+"\nafter\n") {
					m = msg
				}
			}
			if m == "" {
				t.Fatalf("maildir holds %q; want the 5,000-character line whole, received with ESMTPS", msgs)
			}
		})
	}
}

// TestSTARTTLSResetsTheSession: RFC 3207 §4.2: after STARTTLS the server
// forgets what the client said before (its EHLO, its login) and does not
// greet again; the client's first command inside TLS gets the first
// reply. MAIL before a new EHLO is refused, and a login from before
// STARTTLS no longer counts.
func TestSTARTTLSResetsTheSession(t *testing.T) {
	cfg, dir := smtpsConfig(t, "allow_unauthenticated = []")
	h := startHarness(t, cfg, Options{})
	pki := testpeer.TestPKI(t)
	c := dial(t, h.addr)
	if caps := strings.Join(c.ehlo(), "\n"); !strings.Contains(caps, "STARTTLS") {
		t.Fatalf("EHLO in the clear lacks STARTTLS:\n%s", caps)
	}
	if code, last := c.authPlain("printer", "pw"); code != 235 { // loopback: AUTH in the clear
		t.Fatalf("AUTH → %q", last)
	}
	c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
	c.must("MAIL FROM:<p@example.com>", 502, "5.5.1") // no EHLO yet; no greeting before this reply
	if caps := strings.Join(c.ehlo(), "\n"); strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO inside TLS:\n%s\nwant AUTH and no STARTTLS", caps)
	}
	c.must("MAIL FROM:<p@example.com>", 530, "5.7.0") // the login was forgotten
	if code, last := c.authPlain("printer", "pw"); code != 235 {
		t.Fatalf("AUTH inside TLS → %q", last)
	}
	c.must("MAIL FROM:<p@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	if msgs := maildirMessages(t, dir); len(msgs) != 1 || !strings.Contains(msgs[0], "with ESMTPSA id") {
		t.Fatalf("maildir holds %q; want one message received with ESMTPSA", msgs)
	}
}

// TestRefusalsInsideTLSLoggedOnce: STARTTLS with parameters (RFC 3207 §4:
// 501) and STARTTLS inside TLS (503) are refused and the session goes on;
// those and the refusals go-smtp answers itself inside TLS are logged
// once each, like those in the clear.
func TestRefusalsInsideTLSLoggedOnce(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	ways := tlsWays(t, h)
	check := func(t *testing.T, before int, match string, wants ...string) {
		t.Helper()
		lines := grepLines(h.logs.String()[before:], match)
		if len(lines) != 1 {
			t.Fatalf("%d log lines with %s; want 1:\n%s", len(lines), match, h.logs.String()[before:])
		}
		for _, want := range append(wants, "client=127.0.0.1", `msg="command refused"`) {
			if !strings.Contains(lines[0], want) {
				t.Errorf("log line %s\nlacks %s", lines[0], want)
			}
		}
	}
	t.Run("STARTTLS with a parameter", func(t *testing.T) {
		before := len(h.logs.String())
		c := dial(t, h.addr)
		c.ehlo()
		c.must("STARTTLS now", 501, "5.5.4")
		c.must("NOOP", 250, "")
		c.cmd("QUIT")
		h.waitIdle(t)
		check(t, before, "501 5.5.4", "command=STARTTLS")
	})
	for _, way := range ways {
		t.Run(way.name+": STARTTLS again", func(t *testing.T) {
			before := len(h.logs.String())
			c := way.open(t)
			c.ehlo()
			c.must("STARTTLS", 503, "5.5.1")
			c.must("NOOP", 250, "")
			c.cmd("QUIT")
			h.waitIdle(t)
			check(t, before, "503 5.5.1", "command=STARTTLS")
		})
		t.Run(way.name+": answered by go-smtp", func(t *testing.T) {
			before := len(h.logs.String())
			c := way.open(t)
			c.ehlo()
			c.must("MAIL FROM:<root>", 501, "5.5.2")
			c.must("FROB", 500, "5.5.2")
			c.cmd("QUIT")
			h.waitIdle(t)
			check(t, before, "501 5.5.2", "answered by the SMTP library")
			check(t, before, "500 5.5.2", "answered by the SMTP library")
		})
	}
}

// TestSTARTTLSKeepsTheConnectionCount: the connection STARTTLS hands to
// the secure server is the same client connection: it still counts
// against max_connections_per_client, once, and is given back once when
// it closes.
func TestSTARTTLSKeepsTheConnectionCount(t *testing.T) {
	cfg, _ := smtpsConfig(t, "max_connections_per_client = 1")
	h := startHarness(t, cfg, Options{})
	pki := testpeer.TestPKI(t)
	for range 3 {
		c := dial(t, h.addr)
		c.ehlo()
		c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
		c.ehlo()
		if n := h.connections(); n != 1 {
			t.Fatalf("the server counts %d connections; want 1", n)
		}
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		if lines := readAll(t, conn); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.7.0") {
			t.Fatalf("a second connection got %q; want 421 4.7.0", lines)
		}
		conn.Close()
		c.must("QUIT", 221, "")
		h.waitIdle(t)
	}
	// The old go-smtp session ends on its own, maybe after the new one.
	testpeer.WaitFor(t, "the server to track no connection", 10*time.Second, func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return len(h.srv.live) == 0
	})
}

// TestShutdownEndsIdleSTARTTLSSessions: Shutdown gives an idle client
// inside STARTTLS its 421 at once, as one in the clear.
func TestShutdownEndsIdleSTARTTLSSessions(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	pki := testpeer.TestPKI(t)
	c := dial(t, h.addr)
	c.ehlo()
	c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
	c.ehlo()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if code, lines := c.reply(); code != 421 {
		t.Errorf("idle client inside STARTTLS got %q; want 421", lines)
	}
}

// TestLineGateHoldsBackSTARTTLS: with a certificate the gate hands go-smtp
// no STARTTLS line: read returns it as a startTLSCommand, whether it has
// parameters, and the lines before it go on as ever; without one the line
// is go-smtp's, which refuses it.
func TestLineGateHoldsBackSTARTTLS(t *testing.T) {
	for _, tt := range []struct {
		line   string
		params bool
	}{
		{"STARTTLS\r\n", false},
		{"starttls\n", false},
		{"StartTLS  \r\n", false},
		{"STARTTLS now\r\n", true},
		{"STARTTLSXYZ\r\n", true},
	} {
		in := "EHLO x\r\n" + tt.line + "NOOP\r\n"
		g := newLineGate()
		g.tlsCmd = true
		src := gateSource(strings.NewReader(in), io.EOF)
		p := make([]byte, 100)
		n, err := g.read(p, src)
		if string(p[:n]) != "EHLO x\r\n" || err != nil {
			t.Fatalf("%q: first read = %q, %v; want the EHLO line", tt.line, p[:n], err)
		}
		n, err = g.read(p, src)
		if cmd, ok := err.(startTLSCommand); n != 0 || !ok || cmd.params != tt.params {
			t.Fatalf("%q: second read = %q, %v; want a startTLSCommand with params %v", tt.line, p[:n], err, tt.params)
		}
		if n, err = g.read(p, src); string(p[:n]) != "NOOP\r\n" {
			t.Fatalf("%q: third read = %q, %v; want the NOOP line", tt.line, p[:n], err)
		}

		g = newLineGate()
		if out, err := readGate(g, gateSource(strings.NewReader(in), io.EOF), 4096); string(out) != in || err != io.EOF {
			t.Fatalf("%q without a certificate: handed on %q, %v; want all of it", tt.line, out, err)
		}
	}
}

// TestSTARTTLSHandshakeBounded: a client that sends STARTTLS and then
// nothing is dropped after read_timeout, logged once.
func TestSTARTTLSHandshakeBounded(t *testing.T) {
	cfg, _ := smtpsConfig(t, `read_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("STARTTLS", 220, "2.0.0")
	if lines := readAll(t, c.conn); len(lines) != 1 || lines[0] != "" {
		t.Fatalf("a silent client after STARTTLS got %q; want the end of the connection", lines)
	}
	h.waitIdle(t)
	testpeer.WaitFor(t, "the log line of the handshake", 10*time.Second, func() bool {
		return len(grepLines(h.logs.String(), "TLS handshake failed")) > 0
	})
	time.Sleep(50 * time.Millisecond) // a second line would come now
	if lines := grepLines(h.logs.String(), "TLS handshake failed"); len(lines) != 1 || !strings.Contains(lines[0], "listener=starttls") || !strings.Contains(lines[0], "i/o timeout") {
		t.Fatalf("log lines for the handshake: %q; want one, listener=starttls, i/o timeout", lines)
	}
}

// TestShutdownDuringSTARTTLS: a client that Shutdown finds between the
// 220 to its STARTTLS and its handshake completes the handshake, and then
// gets its 421 inside TLS, as any idle client.
func TestShutdownDuringSTARTTLS(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	pki := testpeer.TestPKI(t)
	c := dial(t, h.addr)
	c.ehlo()
	c.must("STARTTLS", 220, "2.0.0")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	testpeer.WaitFor(t, "the server to drain", 10*time.Second, func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.draining
	})
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("the handshake during Shutdown: %v", err)
	}
	if lines := readAll(t, tc); len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") {
		t.Fatalf("inside TLS during Shutdown the client got %q; want 421 alone", lines)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
