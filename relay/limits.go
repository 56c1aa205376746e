package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Limits bound what one client connection may take from the server, beyond
// the configuration's read_timeout, max_message_bytes and friends. The
// zero value of a field means its default.
type Limits struct {
	// DataTimeout bounds the whole transfer of one message (DATA or a
	// BDAT chunk), however steadily the client trickles it; within it,
	// read_timeout applies to each read. Default 10 minutes: 25 MiB, the
	// default max_message_bytes, at 44 kB/s.
	DataTimeout time.Duration
	// SessionTimeout bounds a whole connection, so that a client that
	// keeps a connection alive with a command every few seconds still
	// gives its slot back. Default 1 hour.
	SessionTimeout time.Duration

	// AuthDelay is the delay after the second failed login from one
	// address; it doubles with each further failure up to AuthMaxDelay.
	// The first failure is not delayed (a typo). Defaults 1 s and 16 s,
	// Dovecot's auth penalty schedule.
	AuthDelay, AuthMaxDelay time.Duration
	// AuthForget is how long an address's failures are remembered after
	// its last one; default 15 minutes.
	AuthForget time.Duration
	// AuthClients caps the number of addresses whose failures are
	// remembered (least recently failed forgotten first); default 4096.
	AuthClients int
}

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.DataTimeout, 10*time.Minute)
	def(&l.SessionTimeout, time.Hour)
	def(&l.AuthDelay, time.Second)
	def(&l.AuthMaxDelay, 16*time.Second)
	def(&l.AuthForget, 15*time.Minute)
	if l.AuthClients <= 0 {
		l.AuthClients = 4096
	}
	return l
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deadlineConn enforces relay's time limits on a client connection.
//
// go-smtp sets a read deadline of read_timeout before each command line it
// reads, and leaves it in place while the message of a DATA or BDAT command
// is read, so on its own a message must arrive whole within read_timeout of
// its command and a client that sends a short command every few seconds
// keeps its connection forever. deadlineConn changes three things:
//
//   - while a message is read (beginData until go-smtp's next command),
//     each read that makes progress extends the deadline by read_timeout,
//     but never past DataTimeout after the message began;
//   - no deadline goes past SessionTimeout after the connection was
//     accepted;
//   - once a read or a write has timed out, every later read fails at
//     once, so go-smtp answers 421 4.4.2 and closes: a half-read message
//     is never parsed as commands, and a client that does not read its
//     replies is dropped.
type deadlineConn struct {
	net.Conn   // the client's connection: the socket, or relay's *tls.Conn over it
	idle       time.Duration
	data       time.Duration
	sessionEnd time.Time

	mu       sync.Mutex
	dataEnd  time.Time // zero: not reading a message
	expired  bool
	inTx     bool // the session is in a mail transaction (MAIL to the end of DATA)
	draining bool // the server shuts down: end the connection between transactions
	moving   bool // STARTTLS: the socket's deadlines are no longer this value's to set (starttls.go)
	onClose  func()

	eof          atomic.Bool // the client has closed its side
	ending       atomic.Bool // a 421 was written: the next read ends the connection without a word
	handedOff    atomic.Bool // STARTTLS moved the socket to a new deadlineConn (starttls.go)
	skipGreeting atomic.Bool // after STARTTLS: go-smtp's greeting is not sent (starttls.go)

	gate    *lineGate   // line limits (linegate.go)
	out     replyBuffer // go-smtp's writes, until relay next reads (replybuf.go)
	replies replyWatch  // refusals go-smtp answers itself, for their log line (refusal.go)
	srv     *Server     // runs STARTTLS, when it has a certificate (starttls.go); nil in unit tests

	logTLSHello sync.Once // errTLSHello is logged once
}

// newDeadlineConn wraps a client connection; sessionStart is when the
// client connected.
func newDeadlineConn(c net.Conn, idle time.Duration, l Limits, sessionStart time.Time) *deadlineConn {
	return &deadlineConn{Conn: c, idle: idle, data: l.DataTimeout, sessionEnd: sessionStart.Add(l.SessionTimeout), gate: newLineGate()}
}

// setReadDeadline sets the socket's read deadline to t as clamp allows;
// c.mu is held. After STARTTLS the socket is the new deadlineConn's.
func (c *deadlineConn) setReadDeadline(t time.Time) error {
	if c.moving {
		return nil
	}
	return c.Conn.SetReadDeadline(c.clamp(t))
}

// clamp returns the deadline to use instead of t; c.mu is held.
func (c *deadlineConn) clamp(t time.Time) time.Time {
	if c.expired || (c.draining && !c.inTx && c.dataEnd.IsZero()) {
		return time.Unix(1, 0)
	}
	if t.IsZero() || t.After(c.sessionEnd) {
		t = c.sessionEnd
	}
	if !c.dataEnd.IsZero() && t.After(c.dataEnd) {
		t = c.dataEnd
	}
	return t
}

// SetReadDeadline is called by go-smtp before each command line: the
// message, if one was being read, is over.
func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.gate.nextCommand()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dataEnd = time.Time{}
	return c.setReadDeadline(t)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.moving {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.setReadDeadline(t)
}

// beginData starts the deadline of one message.
func (c *deadlineConn) beginData() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.dataEnd = now.Add(c.data)
	c.setReadDeadline(now.Add(c.idle))
}

// Read gives go-smtp what the line gate lets through. A STARTTLS command
// line the gate held back is answered here (starttls.go); once the
// connection has moved to the secure server, this one's go-smtp session
// reads io.EOF and ends without a word.
func (c *deadlineConn) Read(p []byte) (int, error) {
	for {
		if c.handedOff.Load() {
			return 0, io.EOF
		}
		if c.ending.Load() {
			return 0, net.ErrClosed // go-smtp closes without a reply; Close sends the 421
		}
		n, err := c.gate.read(p, c.readClient)
		if err == errTLSHello {
			// go-smtp ends the connection without a reply; the client,
			// which read the greeting as a TLS record, has given up already.
			c.logTLSHello.Do(func() {
				if c.srv != nil {
					c.srv.logger.Info("TLS ClientHello on the plain listener", "client", remoteAddr(c.Conn).String(),
						"hint", "the client uses implicit TLS (SSL/TLS, SMTPS) from the start: set it to STARTTLS or no encryption, or point it at smtps_listen")
				}
			})
			return 0, fmt.Errorf("%w: %w", errTLSHello, net.ErrClosed)
		}
		cmd, ok := err.(startTLSCommand)
		if !ok {
			return n, err
		}
		if err := c.startTLS(cmd); err != nil {
			return 0, err
		}
	}
}

// readClient reads from the client, extending a message's deadline. The
// replies written so far go out first: the client may wait for them.
func (c *deadlineConn) readClient(p []byte) (int, error) {
	if err := c.out.flush(c.writeClient); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		c.eof.Store(true)
	}
	if err != nil && isTimeout(err) {
		c.expire()
	} else if n > 0 {
		c.mu.Lock()
		if !c.dataEnd.IsZero() && !c.expired {
			c.setReadDeadline(time.Now().Add(c.idle))
		}
		c.mu.Unlock()
	}
	return n, err
}

// Write takes go-smtp's writes, a reply line each, into the reply
// buffer, which readClient and Close flush (replybuf.go).
func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.handedOff.Load() {
		return 0, net.ErrClosed // the socket speaks TLS now, for another session
	}
	if c.skipGreeting.CompareAndSwap(true, false) && bytes.HasPrefix(p, []byte("220 ")) {
		return len(p), nil // RFC 3207 §4.2: after STARTTLS the client speaks first
	}
	if bytes.HasPrefix(p, []byte("421 ")) {
		// RFC 5321 §3.8: a 421 closes the connection; go-smtp would
		// otherwise read on, and answer the next read's failure with a
		// 421 of its own. Set when the 421 is written, not when relay's
		// Data returns it: a BDAT message's Data runs in a goroutine of its
		// own, and go-smtp gives its 421 only once it has read the next
		// chunk, which must not fail first.
		c.ending.Store(true)
	}
	c.gate.replied(p)
	c.replies.wrote(p)
	return c.out.write(p, c.writeClient)
}

// writeClient writes to the client.
func (c *deadlineConn) writeClient(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && isTimeout(err) {
		c.expire()
	}
	return n, err
}

// drain ends the connection at its next command outside a transaction:
// at once when it waits between transactions, else once the transaction
// in progress is over. go-smtp answers the failed read with 421 and
// closes.
func (c *deadlineConn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.inTx && c.dataEnd.IsZero() {
		c.setReadDeadline(time.Time{})
	}
}

// setTx records whether the session is in a mail transaction.
func (c *deadlineConn) setTx(in bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inTx = in
}

// Close sends the replies still buffered (a 221, a 421), closes the
// connection and tells the server it is gone. After STARTTLS it leaves the
// socket, which the new deadlineConn closes.
func (c *deadlineConn) Close() error {
	if c.onClose != nil {
		c.onClose()
	}
	if c.handedOff.Load() {
		return nil
	}
	ferr := c.out.flushOnClose(c.writeClient)
	if err := c.Conn.Close(); err != nil {
		return err
	}
	return ferr
}

// expire makes every later read fail with a timeout.
func (c *deadlineConn) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expired = true
	c.setReadDeadline(time.Time{})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// deadlinesOf finds relay's deadlineConn, which is go-smtp's connection
// (TLS beneath it, if any), or nil.
func deadlinesOf(c net.Conn) *deadlineConn {
	dc, _ := c.(*deadlineConn)
	return dc
}

// TLSConnectionState is the state of relay's TLS beneath the gate; ok is
// false on a connection in the clear. go-smtp's own TLSConnectionState
// sees no TLS on any connection: relay runs it below go-smtp.
func (c *deadlineConn) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	tc, ok := c.Conn.(*tls.Conn)
	if !ok {
		return state, false
	}
	return tc.ConnectionState(), true
}

// flushReplies sends the replies buffered on the session's connection
// (replybuf.go) now, before Logout: go-smtp logs a session out before it
// closes the connection, and Logout may wait for the upstream (the QUIT
// of a direct-mode connection) while the client waits for its 221 or 421.
func (s *session) flushReplies() {
	if s.dc != nil && !s.dc.handedOff.Load() {
		s.dc.out.flushOnClose(s.dc.writeClient)
	}
}

// beginData starts the DATA deadline of the session's connection.
func (s *session) beginData() {
	if s.dc != nil {
		s.dc.beginData()
	}
}

// eofGuard turns the end of a message into io.ErrUnexpectedEOF when the
// client's side of the connection has ended. go-smtp's BDAT copies a chunk
// with io.Copy from an io.LimitReader, which takes a connection closed in
// the middle of the chunk for the end of the chunk: the message would be
// passed on cut short. (For DATA, go-smtp itself reports
// io.ErrUnexpectedEOF.)
type eofGuard struct {
	r  io.Reader
	dc *deadlineConn
}

// guardEOF wraps the reader of a message with an eofGuard.
func (s *session) guardEOF(r io.Reader) io.Reader {
	if s.dc == nil {
		return r
	}
	return eofGuard{r: r, dc: s.dc}
}

func (g eofGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err == io.EOF && g.dc.eof.Load() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// errDataTimeout answers a message that did not arrive in time. The
// connection is dropped right after it (deadlineConn.expire).
var errDataTimeout = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout: message not received in time, closing connection"}

// headerLimitReader fails once the header section of a message (its
// header fields, not the empty line that ends them) is longer than max
// bytes. It
// reads the message as the client sent it, so it counts a bare CR or a
// bare LF as a line ending, as crlfReader does.
type headerLimitReader struct {
	r    io.Reader
	max  int64
	n    int64 // header bytes so far
	bol  bool  // at the beginning of a line
	cr   bool  // the last byte was a CR
	done bool  // the header section has ended
	err  error // the header section was too big
}

func newHeaderLimitReader(r io.Reader, max int64) *headerLimitReader {
	return &headerLimitReader{r: r, max: max, bol: true}
}

func (h *headerLimitReader) Read(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n, err := h.r.Read(p)
	if h.done {
		return n, err
	}
	if i := h.scan(p[:n]); i >= 0 {
		h.err = errHeaderTooBig(h.max)
		return i, h.err
	}
	return n, err
}

// scan counts the header octets in data a line at a time (bytes.IndexAny
// finds each line ending) and returns the index of the first octet past
// the limit, or -1.
func (h *headerLimitReader) scan(data []byte) int {
	for pos := 0; pos < len(data) && !h.done; {
		switch b := data[pos]; {
		case b == '\n' && h.cr:
			h.cr = false // the LF of a CRLF: the line ended at its CR
			h.n++
			pos++
		case b == '\r' || b == '\n':
			if h.bol {
				h.done = true // the empty line: the header section is over
				return -1
			}
			h.bol, h.cr = true, b == '\r'
			h.n++
			pos++
		default:
			j := bytes.IndexAny(data[pos:], "\r\n")
			if j < 0 {
				j = len(data) - pos
			}
			if h.n+int64(j) > h.max {
				return pos + int(h.max-h.n)
			}
			h.bol, h.cr = false, false
			h.n += int64(j)
			pos += j
			continue
		}
		if h.n > h.max {
			return pos - 1
		}
	}
	return -1
}

// errHeaderTooBig: RFC 3463 X.3.4, message too big for system; the text
// says which part was too big.
func errHeaderTooBig(max int64) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message header section too big: more than %d bytes before the first empty line", max)}
}
