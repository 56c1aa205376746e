package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// tlsConfig is the server's TLS configuration for STARTTLS and for the
// implicit-TLS listener. It notes on each connection that a ClientHello
// arrived and which versions it offered, so that a failed STARTTLS
// handshake, whose error go-smtp does not pass on, is logged with what is
// known (tlsWatch).
func tlsConfig(cert tls.Certificate) *tls.Config {
	base := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if dc, ok := hello.Conn.(*deadlineConn); ok {
			dc.tls.hello(hello.SupportedVersions)
		}
		return base, nil
	}
	return cfg
}

// tlsWatch follows the STARTTLS handshake of one connection. go-smtp
// answers a failed one with "550 5.0.0 Handshake error" and keeps the
// error to itself; tlsWatch sees that reply go out and logs the failure
// once, with the client's address and what it knows of the cause.
type tlsWatch struct {
	mu       sync.Mutex
	log      func(listener string, err error) // nil: not watched
	sawHello bool
	versions []uint16
	logged   bool
}

// hello records a ClientHello.
func (w *tlsWatch) hello(versions []uint16) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sawHello, w.versions = true, slices.Clone(versions)
}

// goSMTPHandshakeError is how go-smtp answers a failed STARTTLS handshake.
var goSMTPHandshakeError = []byte("550 5.0.0 Handshake error")

// wrote looks at a reply written in the clear.
func (w *tlsWatch) wrote(p []byte) {
	if !bytes.HasPrefix(p, goSMTPHandshakeError) {
		return
	}
	w.mu.Lock()
	log := w.log
	if log == nil || w.logged {
		w.mu.Unlock()
		return
	}
	w.logged = true
	err := w.cause()
	w.mu.Unlock()
	log("starttls", err)
}

// cause says why a STARTTLS handshake failed, as far as relay can tell;
// w.mu is held.
func (w *tlsWatch) cause() error {
	if !w.sawHello {
		return errors.New("no TLS ClientHello after STARTTLS: the client sent something else or hung up")
	}
	for _, v := range w.versions {
		if v >= tls.VersionTLS12 {
			return errors.New("the handshake failed after the ClientHello: no cipher suite in common, or the client refused relay's certificate")
		}
	}
	names := make([]string, len(w.versions))
	for i, v := range w.versions {
		names[i] = tls.VersionName(v)
	}
	return fmt.Errorf("the client offers only %s; relay accepts TLS 1.2 and 1.3", strings.Join(names, ", "))
}

// logTLSFailure logs a failed TLS handshake of a client, once per
// connection.
func (s *Server) logTLSFailure(client netip.Addr, listener string, err error) {
	s.logger.Info("TLS handshake failed", "client", client.String(), "listener", listener, "error", err.Error())
}

// tlsListener is the implicit-TLS listener (RFC 8314 §3.3). Each
// connection's handshake runs in a goroutine of its own, bounded by
// read_timeout, so a slow or silent client never holds up the others; a
// failed handshake is logged once with the client's address and the TLS
// error, and its connection closed. go-smtp gets connections whose
// handshake is done, as *tls.Conn, so that its sessions know they are
// secure.
type tlsListener struct {
	net.Listener // the limitListener: counts and deadlines first
	s            *Server
	config       *tls.Config
	timeout      time.Duration

	ctx    context.Context // ends with Close: pending handshakes stop
	cancel context.CancelFunc
	start  sync.Once
	ready  chan net.Conn
	failed chan struct{} // closed when the accept loop ends, with err
	err    error
}

func newTLSListener(ln net.Listener, s *Server, config *tls.Config, timeout time.Duration) *tlsListener {
	l := &tlsListener{Listener: ln, s: s, config: config, timeout: timeout, ready: make(chan net.Conn), failed: make(chan struct{})}
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
	tc := tls.Server(c, l.config)
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if l.ctx.Err() == nil {
			l.s.logTLSFailure(remoteAddr(c), "smtps", err)
		}
		tc.Close()
		return
	}
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		tc.Close()
	case <-l.failed:
		tc.Close()
	}
}

// Close stops accepting and ends the handshakes in progress.
func (l *tlsListener) Close() error {
	l.cancel()
	return l.Listener.Close()
}
