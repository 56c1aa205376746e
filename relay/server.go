// Package relay is the inbound side of relay: the SMTP server that legacy
// applications talk to, local logins, the choice of a profile for each
// message, and handing the message to its profile's transport.
package relay

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/queue"
	"github.com/relaymail/relay/spool"
)

// Options are a Server's settings beyond its configuration.
type Options struct {
	Logger *slog.Logger
	// Transports makes the transport of each profile.
	Transports TransportFactory
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Spool holds messages of profiles with delivery = "queue". Without
	// one, every profile is delivered directly.
	Spool *spool.Spool
	// Events, if set, is called with every message event (see Event), for
	// metrics. It is called synchronously from the message path and must
	// not block.
	Events func(Event)
	// Sleep waits for d or until ctx ends; default a timer. The AUTH
	// throttle waits with it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Limits bound each connection beyond the configuration (limits.go).
	Limits Limits
}

// Server is relay's SMTP listener for legacy applications.
//
// It runs two go-smtp servers over one backend (itself) and the same
// settings. relay makes TLS itself, beneath its line gate, so that go-smtp
// reads plaintext through the gate on every connection (starttls.go):
// plain serves connections in the clear and offers STARTTLS when there is
// a certificate; secure serves the connections relay has made TLS (after
// STARTTLS, and from smtps_listen) and offers neither.
type Server struct {
	opts      Options
	logger    *slog.Logger
	plain     *smtp.Server
	secure    *smtp.Server
	tlsConfig *tls.Config // nil: no certificate
	handoff   *connQueue  // connections for secure: those STARTTLS made TLS
	serving   sync.Once   // secure serves handoff from the first Serve or ServeTLS
	state     atomic.Pointer[state]
	queue     *queue.Queue // nil without a spool
	stats     stats

	ctx    context.Context // ends when the server closes
	cancel context.CancelFunc

	throttle *authThrottle

	mu        sync.Mutex
	conns     map[netip.Addr]int
	total     int
	live      map[*deadlineConn]struct{}
	draining  bool
	stopped   bool              // Shutdown or Close was called: serve serves no more
	listeners []*servedListener // what serve gave go-smtp, closed on stop
}

// state is everything a configuration decides; a reload swaps it whole.
type state struct {
	cfg        *config.Config
	policy     *Policy
	transports map[string]Transport
}

// NewServer prepares a server for cfg; Serve starts it.
func NewServer(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	opts.Limits = opts.Limits.withDefaults()
	if opts.Transports == nil {
		return nil, errors.New("relay: Options.Transports is required")
	}
	s := &Server{opts: opts, logger: opts.Logger.With("component", "smtp"), conns: make(map[netip.Addr]int), live: make(map[*deadlineConn]struct{})}
	s.throttle = newAuthThrottle(opts.Limits, opts.Now)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.Apply(cfg); err != nil {
		return nil, err
	}
	if opts.Spool != nil {
		s.queue = queue.New(queue.Options{Spool: opts.Spool, Profiles: queueProfiles{s}, Logger: opts.Logger, Now: opts.Now, Events: s.emit})
	}

	sc := cfg.Server
	switch {
	case sc.Certificate != nil:
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{*sc.Certificate}, MinVersion: tls.VersionTLS12}
	case sc.TLSCertFile != "":
		return nil, fmt.Errorf("relay: tls_cert_file %s is not loaded: resolve the configuration (config.Load or Config.Resolve) first", sc.TLSCertFile)
	}
	s.plain, s.secure = s.newSMTPServer(sc), s.newSMTPServer(sc)
	// go-smtp offers STARTTLS when its TLSConfig is set; relay's gate
	// takes the command before go-smtp sees it (starttls.go). Should a
	// STARTTLS ever reach go-smtp, its handshake fails (550): go-smtp's
	// TLS would lie above the gate, which would see only ciphertext.
	if s.tlsConfig != nil {
		s.plain.TLSConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return nil, errors.New("relay: go-smtp's own STARTTLS is never to run")
		}}
	}
	s.handoff = newConnQueue()
	return s, nil
}

// newSMTPServer is a go-smtp server with the configuration's settings.
func (s *Server) newSMTPServer(sc config.Server) *smtp.Server {
	srv := smtp.NewServer(s)
	srv.Domain = sc.Hostname
	srv.MaxMessageBytes = sc.MaxMessageBytes
	srv.MaxRecipients = sc.MaxRecipients
	// Line limits are relay's (linegate.go): go-smtp's per-byte check is
	// off, command lines are bounded at 2000 octets and message lines
	// only by max_message_bytes.
	srv.MaxLineLength = 0
	srv.ReadTimeout = sc.ReadTimeout.D()
	srv.WriteTimeout = sc.WriteTimeout.D()
	srv.EnableSMTPUTF8 = true
	// AUTH is offered per connection: over relay's TLS or from loopback
	// (session.go).
	srv.AllowInsecureAuth = true
	srv.ErrorLog = slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)
	return srv
}

// Apply switches to a new configuration: profiles, users and routes. The
// transports of the new configuration are made first; if any fails, the
// old configuration stays. Sessions in progress finish with the
// configuration they started their transaction with.
func (s *Server) Apply(cfg *config.Config) error {
	st := &state{cfg: cfg, policy: NewPolicy(cfg), transports: make(map[string]Transport)}
	for _, p := range cfg.Profiles {
		t, err := s.opts.Transports(p)
		if err != nil {
			return fmt.Errorf("profile %q: %w", p.Name, err)
		}
		st.transports[p.Name] = t
	}
	s.state.Store(st)
	return nil
}

// Queue returns the delivery queue, or nil when the server has no spool.
func (s *Server) Queue() *queue.Queue { return s.queue }

// RunQueue delivers queued mail until ctx ends (see Queue.Run).
func (s *Server) RunQueue(ctx context.Context) {
	if s.queue != nil {
		s.queue.Run(ctx)
	}
}

// Config returns the configuration in effect.
func (s *Server) Config() *config.Config { return s.state.Load().cfg }

// Transport returns the transport of the named profile, or nil.
func (s *Server) Transport(profile string) Transport { return s.state.Load().transports[profile] }

// Serve accepts SMTP connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.serveHandoff()
	return s.serve(s.plain, &limitListener{Listener: ln, s: s})
}

// ServeTLS accepts SMTP connections with implicit TLS (RFC 8314 §3.3,
// "submissions") on ln until Shutdown or Close: the same sessions,
// routing, AUTH and limits as Serve, and both stop together. The server
// needs tls_cert_file.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.tlsConfig == nil {
		return errors.New("relay: implicit TLS needs server.tls_cert_file and tls_key_file")
	}
	s.serveHandoff()
	return s.serve(s.secure, newTLSListener(&limitListener{Listener: ln, s: s, implicitTLS: true}, s))
}

// serveHandoff makes the secure server take the connections STARTTLS
// hands it, once.
func (s *Server) serveHandoff() {
	if s.tlsConfig != nil {
		s.serving.Do(func() { go s.serve(s.secure, s.handoff) })
	}
}

// serve runs srv on ln until the server stops. go-smtp's Serve, called
// after its Shutdown or Close, takes the listener and accepts on it for
// ever, so relay keeps its own account: a listener that comes after the
// stop is closed at once, and the stop closes every listener given before
// (stopServing), even one go-smtp has not taken yet.
func (s *Server) serve(srv *smtp.Server, ln net.Listener) error {
	sl := &servedListener{Listener: ln}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, sl)
	s.mu.Unlock()
	err := srv.Serve(sl)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) && s.isStopped() {
		return nil
	}
	return err
}

// stopServing marks the server stopped and closes the listeners serve
// gave go-smtp: Shutdown and Close call it first.
func (s *Server) stopServing() {
	s.mu.Lock()
	s.stopped = true
	ls := s.listeners
	s.listeners = nil
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}

func (s *Server) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// servedListener is a listener relay and go-smtp may both close: the
// first Close closes it, and later ones return what the first did (go-smtp's
// Shutdown reports a listener's Close error, and would otherwise report
// one relay had closed already).
type servedListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *servedListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// Shutdown stops accepting connections, ends the idle ones (421), lets the
// mail transactions in progress finish until ctx ends, ending each
// connection after its transaction; then it closes the rest. Connections
// in the clear and TLS ones alike.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopServing()
	s.mu.Lock()
	s.draining = true
	for dc := range s.live {
		dc.drain()
	}
	s.mu.Unlock()
	// Both at once: a STARTTLS that ends while secure no longer takes
	// connections is answered 421 by relay (starttls.go).
	errs := make(chan error, 1)
	go func() { errs <- ignoreClosed(s.secure.Shutdown(ctx)) }()
	err := cmp.Or(ignoreClosed(s.plain.Shutdown(ctx)), <-errs)
	s.handoff.Close()
	if err != nil {
		s.plain.Close()
		s.secure.Close()
	}
	s.cancel()
	return err
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.stopServing()
	s.cancel()
	if s.queue != nil {
		s.queue.Close()
	}
	perr, serr := ignoreClosed(s.plain.Close()), ignoreClosed(s.secure.Close())
	s.handoff.Close()
	return cmp.Or(perr, serr)
}

// ignoreClosed is err, or nil for go-smtp's ErrServerClosed: stopping a
// stopped server is no failure.
func ignoreClosed(err error) error {
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return newSession(s, c), nil
}

// limitListener refuses connections beyond max_connections in total or
// max_connections_per_client from one address, with 421 4.7.0 before
// go-smtp greets them. It gives the others to go-smtp gated (gate); on
// smtps_listen it gives them as countedConns, to tlsListener.
type limitListener struct {
	net.Listener
	s           *Server
	implicitTLS bool // a refused client gets no 421: it expects a TLS handshake
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteAddr(c)
		if l.s.acquire(addr) {
			counted := &countedConn{Conn: c, accepted: time.Now(), release: sync.OnceFunc(func() { l.s.release(addr) })}
			if l.implicitTLS {
				return counted, nil // tlsListener makes it TLS, then gates it
			}
			return l.s.gate(counted, counted.accepted), nil
		}
		l.s.logger.Warn("connection refused: too many connections", "client", addr.String())
		if !l.implicitTLS {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
		}
		c.Close()
	}
}

func (s *Server) acquire(addr netip.Addr) bool {
	sc := s.state.Load().cfg.Server
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= sc.MaxConnections || s.conns[addr] >= sc.MaxConnectionsPerClient {
		return false
	}
	s.total++
	s.conns[addr]++
	return true
}

// gate wraps a client's connection, the socket or relay's *tls.Conn over
// it, in relay's line gate and limits (limits.go), and tracks it for
// Shutdown; sessionStart is when the client connected.
func (s *Server) gate(c net.Conn, sessionStart time.Time) *deadlineConn {
	addr := remoteAddr(c)
	dc := newDeadlineConn(c, s.plain.ReadTimeout, s.opts.Limits, sessionStart)
	dc.srv = s
	dc.gate.tlsCmd = s.tlsConfig != nil
	_, isTLS := c.(*tls.Conn)
	dc.gate.clear = !isTLS
	dc.replies.log = func(reply string) { s.logLibraryRefusal(addr, reply) }
	s.track(dc)
	return dc
}

// track keeps dc in the set of live connections until it closes, so that
// Shutdown can end the idle ones.
func (s *Server) track(dc *deadlineConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live[dc] = struct{}{}
	dc.onClose = sync.OnceFunc(func() {
		s.mu.Lock()
		delete(s.live, dc)
		s.mu.Unlock()
	})
	if s.draining {
		dc.drain()
	}
}

func (s *Server) release(addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.conns[addr]--; s.conns[addr] <= 0 {
		delete(s.conns, addr)
	}
}

// countedConn is a client's socket, counted against the connection
// limits until it closes.
type countedConn struct {
	net.Conn
	accepted time.Time
	release  func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// remoteAddr is the client's IP address, unmapped from IPv4-in-IPv6.
func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
