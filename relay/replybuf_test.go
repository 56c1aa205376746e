package relay

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// writeLog is a listener whose connections record each Write the server
// makes, as the client's socket gets it.
type writeLog struct {
	net.Listener
	mu     sync.Mutex
	writes []string
}

func (l *writeLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &loggedConn{Conn: c, log: l}, nil
}

// since returns the writes after the first n.
func (l *writeLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.writes[min(n, len(l.writes)):]...)
}

type loggedConn struct {
	net.Conn
	log *writeLog
}

func (c *loggedConn) Write(p []byte) (int, error) {
	c.log.mu.Lock()
	c.log.writes = append(c.log.writes, string(p))
	c.log.mu.Unlock()
	return c.Conn.Write(p)
}

// TestRepliesGoOutTogether: relay sends the lines of a multi-line reply,
// and the replies to a group of pipelined commands (RFC 2920), in one
// write each, and still answers a client that waits for each reply: the
// greeting, the 354 before the message, the 221 before it closes.
func TestRepliesGoOutTogether(t *testing.T) {
	cfg, dir := maildirConfig(t, "")
	h := startHarness(t, cfg, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := &writeLog{Listener: ln}
	go h.srv.Serve(wl)
	c := dial(t, ln.Addr().String())

	step := func(name string, send string, replies []int, wantWrites int) {
		t.Helper()
		before := len(wl.since(0))
		if send != "" {
			if _, err := c.conn.Write([]byte(send)); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range replies {
			if code, lines := c.reply(); code != want {
				t.Fatalf("%s: reply %q; want %d", name, lines, want)
			}
		}
		if got := wl.since(before); len(got) != wantWrites {
			t.Errorf("%s: the server wrote %q; want %d write(s)", name, got, wantWrites)
		}
	}
	step("EHLO", "EHLO client.example.com\r\n", []int{250}, 1)
	step("pipelined MAIL, RCPT, DATA", "MAIL FROM:<a@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\n", []int{250, 250, 354}, 1)
	step("the message", msgBody+".\r\n", []int{250}, 1)
	step("a lone NOOP", "NOOP\r\n", []int{250}, 1)
	step("pipelined RSET, NOOP, QUIT", "RSET\r\nNOOP\r\nQUIT\r\n", []int{250, 250, 221}, 1)
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.r.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("after 221: read %d octets, %v; want the connection closed", n, err)
	}
	if msgs := maildirMessages(t, dir); len(msgs) != 1 || !strings.Contains(msgs[0], "Pump 3 stopped.") {
		t.Errorf("the Maildir holds %d messages; want the one sent", len(msgs))
	}
}

// TestReplyBufferFlushes: the reply buffer holds writes until flush, goes
// out at once for a 354 and for a full buffer, and keeps a write error.
func TestReplyBufferFlushes(t *testing.T) {
	var out [][]byte
	var fail error
	w := func(p []byte) (int, error) {
		if fail != nil {
			return 0, fail
		}
		out = append(out, bytes.Clone(p))
		return len(p), nil
	}
	var b replyBuffer
	b.write([]byte("250-a\r\n"), w)
	b.write([]byte("250 b\r\n"), w)
	if len(out) != 0 {
		t.Fatalf("held writes went out: %q", out)
	}
	b.flush(w)
	b.write([]byte("250 c\r\n"), w)
	b.write([]byte("354 go\r\n"), w)
	b.write(bytes.Repeat([]byte("x"), replyFlushAt), w)
	want := []string{"250-a\r\n250 b\r\n", "250 c\r\n354 go\r\n", strings.Repeat("x", replyFlushAt)}
	if len(out) != len(want) {
		t.Fatalf("writes %q; want %q", out, want)
	}
	for i := range want {
		if string(out[i]) != want[i] {
			t.Fatalf("write %d = %q; want %q", i, out[i], want[i])
		}
	}
	fail = net.ErrClosed
	b.write([]byte("221 bye\r\n"), w)
	if err := b.flush(w); err != net.ErrClosed {
		t.Fatalf("flush after a failed write = %v; want %v", err, net.ErrClosed)
	}
	if _, err := b.write([]byte("421\r\n"), w); err != net.ErrClosed {
		t.Fatalf("write after a failed write = %v; want %v", err, net.ErrClosed)
	}
}

// quitHoldProxy forwards connections to a real upstream, but holds back a
// QUIT from relay until release is called: an upstream that does not
// answer the QUIT relay sends when its client leaves.
func quitHoldProxy(t *testing.T, upstream string) (port int, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			wg.Go(func() {
				io.Copy(c, u)
				c.Close()
			})
			wg.Go(func() {
				defer u.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 && bytes.Contains(buf[:n], []byte("QUIT\r\n")) {
						<-held
					}
					if n > 0 {
						if _, werr := u.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port, sync.OnceFunc(func() { close(held) })
}

// TestQuitAnsweredBeforeUpstreamQuit: in direct mode, go-smtp logs the
// session out (which says QUIT to the upstream and waits for its reply)
// before it closes the client's connection; the 221 relay has buffered
// must reach the client before that, not wait for the upstream.
func TestQuitAnsweredBeforeUpstreamQuit(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	port, release := quitHoldProxy(t, u.Addr)
	// The upstream's QUIT is held longer than the client waits for its 221.
	cfg := strings.Replace(directConfig(t, port), `smtp_timeout = "2s"`, `smtp_timeout = "60s"`, 1)
	if !strings.Contains(cfg, `smtp_timeout = "60s"`) {
		t.Fatalf("directConfig's smtp_timeout is no longer 2s:\n%s", cfg)
	}
	h := startHarness(t, cfg, Options{})
	t.Cleanup(release) // before relay's shutdown, which waits for the session
	c := dial(t, h.addr)
	normalMessage(c, "app@example.com")
	u.WaitMessages(t, 1, 10*time.Second)
	c.send("QUIT")
	c.expect(221) // fails after 10 s while the 221 waits for the upstream
}
