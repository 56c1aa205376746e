package relay

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// relay runs STARTTLS (RFC 3207) itself, beneath its line gate.
//
// go-smtp takes a connection for a secure one only when it is a *tls.Conn,
// and runs STARTTLS on its own connection: the gate would then sit below
// TLS and see only ciphertext. So the gate holds back a STARTTLS command
// line (lineGate.check) and the connection answers it (startTLS): 220, the
// handshake on the socket, and a new gated connection over the *tls.Conn,
// which goes to the secure go-smtp server through connQueue. The plain
// go-smtp session reads io.EOF and ends without a word; its Close leaves
// the socket to the new connection. The plaintext the client sent behind
// STARTTLS stays in the old gate and is dropped with it, never read as if
// it came over TLS (CVE-2011-0411). The secure server's greeting is not
// sent (RFC 3207 §4.2: the client speaks first, with EHLO), and its fresh
// go-smtp Conn is the reset §4.2 asks for: the session before STARTTLS is
// logged out, a new one starts at the next EHLO, and MAIL or AUTH before
// it gets go-smtp's 502 5.5.1.

// startTLSCommand is a STARTTLS command line, which the gate returns from
// read instead of handing it on.
type startTLSCommand struct {
	params bool // something follows the verb: a syntax error (RFC 3207 §4)
}

func (startTLSCommand) Error() string { return "STARTTLS command line" }

// parseStartTLS recognises a STARTTLS command line, the way go-smtp's
// parseCmd does: the line upper-cased (strings.ToUpper) begins with
// STARTTLS, so "ſ" (U+017F, whose upper case is S) counts as an S. Every
// line go-smtp would take for STARTTLS must be relay's: go-smtp's own
// STARTTLS would run TLS above the gate. Spaces before the line break are
// tolerated.
func parseStartTLS(line []byte) (startTLSCommand, bool) {
	const verb = "STARTTLS"
	if len(line) < len(verb) || line[0] < utf8.RuneSelf && line[0]|0x20 != 's' {
		return startTLSCommand{}, false // the common case, without a copy
	}
	head := line[:min(len(line), len(verb)*utf8.UTFMax)]
	if !strings.HasPrefix(strings.ToUpper(string(head)), verb) {
		return startTLSCommand{}, false
	}
	var end int // the end of the verb's 8 runes in line
	for range len(verb) {
		_, size := utf8.DecodeRune(line[end:])
		end += size
	}
	return startTLSCommand{params: len(bytes.TrimRight(line[end:], " \t\r\n")) > 0}, true
}

// Replies of relay's STARTTLS.
var (
	replyReadyForTLS = &smtp.SMTPError{Code: 220, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ready to start TLS"}
	// RFC 3207 §4: "501 Syntax error (no parameters allowed)".
	errStartTLSParams = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Syntax error: STARTTLS takes no parameters"}
	// RFC 5321 §4.2.4: 503, bad sequence of commands.
	errAlreadyTLS = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Already running in TLS"}
	// A client that answers the 220 in plaintext is told so before relay
	// closes; one that speaks TLS gets crypto/tls's alert instead.
	errNoTLSAfterStartTLS = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "TLS handshake failed: no TLS ClientHello after STARTTLS, closing connection"}
	errShuttingDown       = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down, try again later"}
)

// startTLS answers a STARTTLS command line (RFC 3207 §4). It returns nil
// when the session goes on as it was (the command was refused), io.EOF
// when this connection's go-smtp session is over: the client speaks TLS to
// the secure server now, or the handshake failed (logged once) and go-smtp
// closes the connection without a word.
func (c *deadlineConn) startTLS(cmd startTLSCommand) error {
	s := c.srv
	if cmd.params {
		c.refuse(errStartTLSParams, "STARTTLS takes no parameters")
		return nil
	}
	if _, ok := c.TLSConnectionState(); ok {
		c.refuse(errAlreadyTLS, "STARTTLS on a connection that is TLS already")
		return nil
	}
	if err := c.reply(replyReadyForTLS); err != nil {
		return io.EOF // the client is gone, or does not read
	}

	// The socket is the handshake's now: a Shutdown that drains this
	// connection, or a BDAT goroutine that starts a message's deadline,
	// leaves its deadlines alone. The new connection is drained in turn.
	c.mu.Lock()
	c.moving = true
	deadline := c.sessionEnd
	if c.idle > 0 && time.Now().Add(c.idle).Before(deadline) {
		deadline = time.Now().Add(c.idle)
	}
	c.mu.Unlock()
	tc, err := s.handshake(s.ctx, c.Conn, "starttls", deadline)
	if err != nil {
		if rhe := (tls.RecordHeaderError{}); errors.As(err, &rhe) && rhe.Conn != nil {
			rhe.Conn.Write([]byte(replyString(errNoTLSAfterStartTLS) + "\r\n"))
		}
		return io.EOF
	}

	next := s.gate(tc, c.sessionEnd.Add(-s.opts.Limits.SessionTimeout)) // the same session limit
	next.skipGreeting.Store(true)
	c.handedOff.Store(true)
	if !s.handoff.put(next) {
		next.reply(errShuttingDown)
		next.Close()
	}
	return io.EOF
}

// reply writes one reply of relay's own, as go-smtp writes its replies:
// through Write, with a write deadline of write_timeout. It goes out at
// once, with the replies buffered before it (replybuf.go): after a 220 the
// handshake writes to the socket itself.
func (c *deadlineConn) reply(r *smtp.SMTPError) error {
	if d := c.srv.plain.WriteTimeout; d > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	if _, err := c.Write([]byte(replyString(r) + "\r\n")); err != nil {
		return err
	}
	return c.out.flush(c.writeClient)
}

// refuse answers a STARTTLS relay refuses, logged once like every
// refusal. The session goes on; a reply that cannot be written shows in the
// next read, as with go-smtp's own replies.
func (c *deadlineConn) refuse(r *smtp.SMTPError, reason string) {
	c.srv.logger.Info("command refused", "client", remoteAddr(c.Conn).String(), "command", "STARTTLS", "reply", replyString(r), "reason", reason)
	c.replies.expect()
	c.reply(r)
}

// connQueue is the secure go-smtp server's listener for the connections
// STARTTLS made TLS: a net.Listener in process.
type connQueue struct {
	conns  chan net.Conn
	closed chan struct{}
	close  sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// put hands c to the server; false when the queue is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case <-q.closed:
		return false
	default:
	}
	select {
	case q.conns <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case <-q.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.close.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "relay" }
func (queueAddr) String() string  { return "starttls" }
