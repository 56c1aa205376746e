package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// smtpsConfig is a Maildir configuration with a certificate, a user and
// extra lines for [server].
func smtpsConfig(t *testing.T, extra string) (cfg, dir string) {
	_, certFile, keyFile := testpeer.TestPKI(t).Files(t)
	cfg, dir = maildirConfig(t, fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q\n%s", certFile, keyFile, extra))
	return cfg + fmt.Sprintf(`
[[users]]
name = "printer"
password_hash = %q
profile = "local"
`, hash(t, "pw")), dir
}

// serveTLS serves the harness's server with implicit TLS on a new
// loopback port, and returns the address and ServeTLS's result.
func (h *harness) serveTLS(t testing.TB) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.srv.ServeTLS(ln) }()
	return ln.Addr().String(), done
}

// dialTLS connects with implicit TLS and reads the greeting.
func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: testpeer.TestPKI(t).CAPool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, conn)
}

// TestSMTPSListener: a client that speaks TLS from the first byte (RFC
// 8314, Ignition's "Use SSL") logs in and sends, with the routing, AUTH
// and limits of the plain listener.
func TestSMTPSListener(t *testing.T) {
	cfg, dir := smtpsConfig(t, "allow_unauthenticated = []\nmax_connections_per_client = 2")
	h := startHarness(t, cfg, Options{})
	addr, _ := h.serveTLS(t)

	c := dialTLS(t, addr)
	if caps := strings.Join(c.ehlo(), "\n"); strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO over implicit TLS:\n%s\nwant AUTH and no STARTTLS", caps)
	}
	c.must("MAIL FROM:<p@example.com>", 530, "5.7.0") // allow_unauthenticated = []: a login first
	if code, last := c.authPlain("printer", "pw"); code != 235 {
		t.Fatalf("AUTH → %q", last)
	}
	c.must("MAIL FROM:<p@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	msgs := maildirMessages(t, dir)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "with ESMTPSA") || !strings.Contains(msgs[0], "Pump 3 stopped.\n") {
		t.Fatalf("maildir holds %q; want the message, received with ESMTPSA", msgs)
	}

	// max_connections_per_client counts both listeners: a plain one and
	// this TLS one make two; a third is refused (closed before TLS).
	dial(t, h.addr)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: testpeer.TestPKI(t).CAPool, ServerName: "localhost"})
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatalf("a third connection from one client was served; want it closed")
	}
	if n := strings.Count(h.logs.String(), "connection refused: too many connections"); n != 1 {
		t.Errorf("%d log lines for the refused connection; want 1", n)
	}
}

// TestTLSHandshakeFailuresLogged: a failed handshake, on the implicit-TLS
// listener or after STARTTLS, is logged once with the client's address and
// crypto/tls's own error, and the connection closed: after a TLS alert
// without a word in the clear, after plaintext with a 554 5.7.0.
func TestTLSHandshakeFailuresLogged(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	smtpsAddr, _ := h.serveTLS(t)
	tests := []struct {
		name  string
		talk  func(t *testing.T)
		wants []string
	}{
		{"plain text to the SMTPS port", func(t *testing.T) {
			conn, err := net.Dial("tcp", smtpsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write([]byte("EHLO plain.example.com\r\n"))
			readAll(t, conn)
		}, []string{"listener=smtps", "first record does not look like a TLS handshake"}},
		{"ClientHello cut short on the SMTPS port", func(t *testing.T) {
			conn, err := net.Dial("tcp", smtpsAddr)
			if err != nil {
				t.Fatal(err)
			}
			conn.Write([]byte("\x16\x03\x01\x01\x00\x01\x00")) // a handshake record's header, 2 octets of 256
			conn.Close()
		}, []string{"listener=smtps", "unexpected EOF"}},
		{"TLS 1.0 only to the SMTPS port", func(t *testing.T) {
			conn, err := tls.Dial("tcp", smtpsAddr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
			if err == nil {
				conn.Close()
				t.Fatal("a TLS 1.0 handshake succeeded")
			}
		}, []string{"listener=smtps", "unsupported versions"}},
		{"TLS 1.0 only after STARTTLS", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("STARTTLS", 220, "")
			if err := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}).Handshake(); err == nil {
				t.Fatal("a TLS 1.0 handshake succeeded")
			}
			if rest := readAll(t, c.conn); len(rest) != 1 || rest[0] != "" {
				t.Errorf("after the TLS alert the server sent %q; want it to close", rest)
			}
		}, []string{"listener=starttls", `error="tls: client offered only unsupported versions: [301]"`}},
		{"plain text after STARTTLS", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("STARTTLS", 220, "")
			c.send("MAIL FROM:<a@example.com>")
			if code, lines := c.reply(); code != 554 || !strings.HasPrefix(lines[0], "554 5.7.0 ") {
				t.Errorf("plain text after STARTTLS → %q; want 554 5.7.0", lines)
			}
			if rest := readAll(t, c.conn); len(rest) != 1 || rest[0] != "" {
				t.Errorf("after the 554 the server sent %q; want it to close", rest)
			}
		}, []string{"listener=starttls", `error="tls: first record does not look like a TLS handshake"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.logs.String())
			tt.talk(t)
			var lines []string
			for i := 0; i < 100; i++ {
				lines = grepLines(h.logs.String()[before:], "TLS handshake failed")
				if len(lines) > 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // a second line would come now
			lines = grepLines(h.logs.String()[before:], "TLS handshake failed")
			if len(lines) != 1 {
				t.Fatalf("%d log lines for the failed handshake; want 1:\n%s", len(lines), h.logs.String()[before:])
			}
			for _, want := range append(tt.wants, "client=127.0.0.1") {
				if !strings.Contains(lines[0], want) {
					t.Errorf("log line %q lacks %q", lines[0], want)
				}
			}
		})
	}

	// A TCP health check or a port scan (connect, then close without an
	// octet, with a FIN or with a reset) is no failed handshake: one DEBUG
	// line, nothing at INFO.
	for _, reset := range []bool{false, true} {
		before := len(h.logs.String())
		conn, err := net.Dial("tcp", smtpsAddr)
		if err != nil {
			t.Fatal(err)
		}
		if reset {
			conn.(*net.TCPConn).SetLinger(0)  // Close sends RST
			time.Sleep(50 * time.Millisecond) // the server reads, and gets the reset
		}
		conn.Close()
		failed, closed := handshakeLogLines(t, h, before)
		if len(closed) != 1 || !strings.Contains(closed[0], "level=DEBUG") || !strings.Contains(closed[0], "client=127.0.0.1") {
			t.Errorf("a connection closed before its handshake (reset %v) logged %q; want one DEBUG line with the client", reset, closed)
		}
		if len(failed) != 0 {
			t.Errorf("a connection closed before its handshake (reset %v) logged %q; want no failure", reset, failed)
		}
	}
}

// TestSMTPSSilentClient: a client that connects to smtps_listen and sends
// nothing (one set up for plain SMTP or STARTTLS, waiting for a 220) is
// dropped after read_timeout with one INFO line that says what is likely
// wrong.
func TestSMTPSSilentClient(t *testing.T) {
	cfg, _ := smtpsConfig(t, `read_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	smtpsAddr, _ := h.serveTLS(t)
	conn, err := net.Dial("tcp", smtpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 100)); n != 0 || err == nil {
		t.Errorf("a silent client on the SMTPS port read %d octets, %v; want the connection closed", n, err)
	}
	testpeer.WaitFor(t, "the failed handshake's log line", 5*time.Second, func() bool {
		return len(grepLines(h.logs.String(), "TLS handshake failed")) > 0
	})
	lines := grepLines(h.logs.String(), "TLS handshake failed")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "i/o timeout") || !strings.Contains(lines[0], `hint="the client sent nothing`) {
		t.Errorf("log lines %q; want one INFO line with the timeout and the hint", lines)
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// TestSMTPSStopsWithTheServer: Shutdown ends idle connections on the
// implicit-TLS listener too (421), and ServeTLS returns.
func TestSMTPSStopsWithTheServer(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	addr, done := h.serveTLS(t)
	c := dialTLS(t, addr)
	c.ehlo()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if code, lines := c.reply(); code != 421 {
		t.Errorf("idle TLS client got %q; want 421", lines)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeTLS = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeTLS did not return after Shutdown")
	}
}

// TestTLSHandshakeAbandonedAfterClientHello: a client that sends its
// ClientHello, reads the server's reply and then hangs up without an
// alert (as a client that does not trust the certificate may) failed its
// handshake: crypto/tls reports io.EOF there too (a close at a record
// boundary), but the connection said something, so it is no health
// check: "TLS handshake failed" at INFO, not the DEBUG line of a
// connection closed before its first octet.
func TestTLSHandshakeAbandonedAfterClientHello(t *testing.T) {
	cfg, _ := smtpsConfig(t, "")
	h := startHarness(t, cfg, Options{})
	smtpsAddr, _ := h.serveTLS(t)

	// A real ClientHello record, from crypto/tls over a pipe.
	cp, sp := net.Pipe()
	go tls.Client(cp, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true}).Handshake()
	head := make([]byte, 5)
	if _, err := io.ReadFull(sp, head); err != nil {
		t.Fatal(err)
	}
	hello := make([]byte, 5+int(head[3])<<8|int(head[4]))
	copy(hello, head)
	if _, err := io.ReadFull(sp, hello[5:]); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	cp.Close()

	before := len(h.logs.String())
	conn, err := net.Dial("tcp", smtpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(hello); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, make([]byte, 5)); err != nil { // the ServerHello's record header
		t.Fatalf("no reply to the ClientHello: %v", err)
	}
	// The rest of the server's flight, so that the close is a FIN, not a
	// reset for octets left unread.
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	io.Copy(io.Discard, conn)
	conn.Close()
	failed, closed := handshakeLogLines(t, h, before)
	if len(failed) != 1 || !strings.Contains(failed[0], "level=INFO") || !strings.Contains(failed[0], "listener=smtps") || !strings.Contains(failed[0], "client=127.0.0.1") {
		t.Errorf("a handshake abandoned after the ClientHello logged %q; want one INFO failure with the client", failed)
	}
	if len(closed) != 0 {
		t.Errorf("a handshake abandoned after the ClientHello logged %q as a connection that said nothing", closed)
	}
}

// handshakeLogLines waits, at most 5 s, for the log line of a connection
// to the SMTPS port that ended in its handshake, logged since the
// position before, and returns the lines of both kinds: failed handshakes
// and connections closed before one.
func handshakeLogLines(t *testing.T, h *harness, before int) (failed, closed []string) {
	t.Helper()
	testpeer.WaitFor(t, "the connection's log line", 5*time.Second, func() bool {
		logs := h.logs.String()[before:]
		return len(grepLines(logs, "TLS handshake failed"))+len(grepLines(logs, "connection closed before TLS handshake")) > 0
	})
	time.Sleep(50 * time.Millisecond) // a second line would come now
	logs := h.logs.String()[before:]
	return grepLines(logs, "TLS handshake failed"), grepLines(logs, "connection closed before TLS handshake")
}

// TestImplicitTLSOnPlainListener: a client set up for implicit TLS (SSL/TLS,
// SMTPS) that connects to the plain listener opens with a TLS ClientHello.
// relay does not read it as commands (go-smtp answered each binary "line"
// with 501 and logged five refusals): it closes the connection with one
// INFO line that says what is wrong, with or without a certificate.
func TestImplicitTLSOnPlainListener(t *testing.T) {
	withCert, _ := smtpsConfig(t, "")
	without, _ := maildirConfig(t, "")
	for name, cfg := range map[string]string{"with a certificate": withCert, "without": without} {
		t.Run(name, func(t *testing.T) {
			h := startHarness(t, cfg, Options{})
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", h.addr, &tls.Config{RootCAs: testpeer.TestPKI(t).CAPool, ServerName: "localhost"})
			if err == nil {
				conn.Close()
				t.Fatal("a TLS handshake on the plain listener succeeded")
			}
			testpeer.WaitFor(t, "the log line", 5*time.Second, func() bool {
				return len(grepLines(h.logs.String(), "TLS ClientHello on the plain listener")) > 0
			})
			h.waitIdle(t)
			logs := h.logs.String()
			if lines := grepLines(logs, "TLS ClientHello on the plain listener"); len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "client=127.0.0.1") || !strings.Contains(lines[0], `hint="`) {
				t.Errorf("log lines %q; want one INFO line with the client and a hint", lines)
			}
			if lines := grepLines(logs, "command refused"); len(lines) != 0 {
				t.Errorf("the ClientHello was read as commands: %q", lines)
			}

			// Only a connection's first octet counts: later, the same
			// octets are a bad command like any other.
			c := dial(t, h.addr)
			c.ehlo()
			if code, last := c.cmd("\x16\x03\x01 not a command"); code != 500 && code != 501 {
				t.Errorf("a TLS record header after EHLO → %q; want a syntax error", last)
			}
			c.must("NOOP", 250, "")
		})
	}
}
