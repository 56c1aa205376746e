package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// handshake runs the server side of a TLS handshake on c, a client's
// socket, until deadline; a cancelled ctx (the server closes) interrupts
// it. A failure is logged once, with the client's address, the listener
// ("smtps" or "starttls") and crypto/tls's own error (a timeout as the
// socket's "i/o timeout"), unless the server is closing. The socket's
// deadlines are cleared after a handshake that succeeds.
func (s *Server) handshake(ctx context.Context, c net.Conn, listener string, deadline time.Time) (*tls.Conn, error) {
	c.SetDeadline(deadline)
	rc := &readCountConn{Conn: c}
	tc := tls.Server(rc, s.tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() == nil {
			s.logTLSFailure(remoteAddr(c), listener, err, rc.read.Load())
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// logTLSFailure logs a failed TLS handshake of a client, once per
// connection; read is whether the client sent anything. A connection to
// the implicit-TLS listener that ends before its first octet (crypto/tls's
// io.EOF with nothing read: crypto/tls gives io.EOF for a close at any
// record boundary, after a whole ClientHello too, and io.ErrUnexpectedEOF
// for one cut inside a record), or with a TCP reset, is a TCP health check
// or a port scan, not a client that failed: it is logged at DEBUG only, as
// a plain connection that says nothing is. One that sends nothing until
// read_timeout is most likely a client set up for plain SMTP or STARTTLS,
// waiting for a greeting that implicit TLS never sends: its line says so.
// After STARTTLS the client asked for TLS, so leaving there is a failure.
func (s *Server) logTLSFailure(client netip.Addr, listener string, err error, read bool) {
	attrs := []any{"client", client.String(), "listener", listener, "error", err.Error()}
	if listener == "smtps" && !read {
		switch {
		case errors.Is(err, io.EOF) || connReset(err):
			s.logger.Debug("connection closed before TLS handshake", attrs[:4]...)
			return
		case isTimeout(err):
			attrs = append(attrs, "hint", "the client sent nothing: one set up for plain SMTP or STARTTLS waits for a greeting here; point it at listen, or set it to implicit TLS (SSL/TLS, SMTPS)")
		}
	}
	s.logger.Info("TLS handshake failed", attrs...)
}

// readCountConn is a client's socket under crypto/tls that notes whether
// the client has sent an octet (logTLSFailure).
type readCountConn struct {
	net.Conn
	read atomic.Bool
}

func (c *readCountConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.read.Load() {
		c.read.Store(true)
	}
	return n, err
}

// tlsListener is the implicit-TLS listener (RFC 8314 §3.3). Each
// connection's handshake runs in a goroutine of its own, bounded by
// read_timeout, so a slow or silent client never holds up the others; a
// failed handshake is logged once with the client's address and the TLS
// error, and its connection closed. go-smtp (the secure server) gets
// connections whose handshake is done, with relay's gate over the
// *tls.Conn, so that it reads plaintext through the gate.
type tlsListener struct {
	net.Listener // the limitListener: counts first
	s            *Server
	timeout      time.Duration

	ctx    context.Context // ends with Close: pending handshakes stop
	cancel context.CancelFunc
	start  sync.Once
	ready  chan net.Conn
	failed chan struct{} // closed when the accept loop ends, with err
	err    error
}

func newTLSListener(ln net.Listener, s *Server) *tlsListener {
	l := &tlsListener{Listener: ln, s: s, timeout: s.plain.ReadTimeout, ready: make(chan net.Conn), failed: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

func (l *tlsListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.failed:
		return nil, l.err
	}
}

func (l *tlsListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.err = err
			close(l.failed)
			return
		}
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	tc, err := l.s.handshake(l.ctx, c, "smtps", time.Now().Add(l.timeout))
	if err != nil {
		c.Close()
		return
	}
	start := time.Now()
	if cc, ok := c.(*countedConn); ok {
		start = cc.accepted
	}
	dc := l.s.gate(tc, start)
	select {
	case l.ready <- dc:
	case <-l.ctx.Done():
		dc.Close()
	case <-l.failed:
		dc.Close()
	}
}

// Close stops accepting and ends the handshakes in progress.
func (l *tlsListener) Close() error {
	l.cancel()
	return l.Listener.Close()
}
