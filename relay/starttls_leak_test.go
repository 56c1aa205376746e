package relay

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestTLSStagesLeakNothing: a client that hangs up, fails or finishes at
// each step of STARTTLS and of implicit TLS leaves no goroutine, no
// connection counted against the limits and no tracked connection
// behind.
func TestTLSStagesLeakNothing(t *testing.T) {
	cfg, _ := smtpsConfig(t, `read_timeout = "1s"`)
	h := startHarness(t, cfg, Options{})
	smtps, _ := h.serveTLS(t)
	tcfg := &tls.Config{RootCAs: testpeer.TestPKI(t).CAPool, ServerName: "localhost"}
	rawTLS := func(t *testing.T) net.Conn {
		conn, err := net.Dial("tcp", smtps)
		if err != nil {
			t.Fatal(err)
		}
		testpeer.WaitFor(t, "the server to count the connection", 10*time.Second, func() bool { return h.connections() == 1 })
		return conn
	}
	idle := func(t *testing.T) {
		t.Helper()
		h.waitIdle(t)
		testpeer.WaitFor(t, "the server to track no connection", 10*time.Second, func() bool {
			h.srv.mu.Lock()
			defer h.srv.mu.Unlock()
			return len(h.srv.live) == 0 && len(h.srv.conns) == 0
		})
	}
	c := dialTLS(t, smtps) // the smtps accept loop runs from now on
	c.must("QUIT", 221, "")
	idle(t)
	base := runtime.NumGoroutine()

	for _, step := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"hang-up after the 220", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("STARTTLS", 220, "2.0.0")
			c.conn.Close()
		}},
		{"hang-up inside the ClientHello", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("STARTTLS", 220, "2.0.0")
			c.conn.Write([]byte{0x16, 3, 1, 0, 200, 1})
			c.conn.Close()
		}},
		{"silent after the 220", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("STARTTLS", 220, "2.0.0")
			readAll(t, c.conn)
		}},
		{"plaintext after the 220", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("STARTTLS", 220, "2.0.0")
			c.send("EHLO x")
			readAll(t, c.conn)
		}},
		{"hang-up inside TLS", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.startTLS(tcfg)
			c.ehlo()
			c.conn.Close()
		}},
		{"hang-up inside a message inside TLS", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.startTLS(tcfg)
			c.ehlo()
			c.must("MAIL FROM:<app@example.com>", 250, "")
			c.must("RCPT TO:<ops@example.com>", 250, "")
			c.must("DATA", 354, "")
			c.conn.Write([]byte("Subject: cut\r\n"))
			c.conn.Close()
		}},
		{"STARTTLS inside a BDAT message, then QUIT", func(t *testing.T) {
			c := dial(t, h.addr)
			c.ehlo()
			c.must("MAIL FROM:<app@example.com>", 250, "")
			c.must("RCPT TO:<ops@example.com>", 250, "")
			c.conn.Write([]byte("BDAT 5\r\nhello"))
			c.expect(250)
			c.startTLS(tcfg)
			c.ehlo()
			c.must("QUIT", 221, "")
		}},
		{"smtps: hang-up inside the ClientHello", func(t *testing.T) {
			conn := rawTLS(t)
			conn.Write([]byte{0x16, 3, 1})
			conn.Close()
		}},
		{"smtps: silent", func(t *testing.T) {
			conn := rawTLS(t)
			defer conn.Close()
			readAll(t, conn)
		}},
		{"smtps: hang-up inside TLS", func(t *testing.T) {
			c := dialTLS(t, smtps)
			c.ehlo()
			c.conn.Close()
		}},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.run(t)
			idle(t)
		})
	}
	var n int
	for range 200 {
		if n = runtime.NumGoroutine(); n <= base {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines after the steps; want at most the %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
}
