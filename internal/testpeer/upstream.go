package testpeer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/sasllogin"
)

// TLS modes of a test upstream.
const (
	TLSNone     = ""
	TLSImplicit = "implicit" // TLS from the first byte, as on port 465
	TLSStartTLS = "starttls" // plain, upgraded with STARTTLS, as on port 587
)

// UpstreamOptions configure a test upstream.
type UpstreamOptions struct {
	TLS            string // TLSNone, TLSImplicit or TLSStartTLS
	MinTLS, MaxTLS uint16 // limits of the server's TLS versions; 0: Go's defaults

	// Users, when not nil, makes AUTH mandatory for MAIL: login → password.
	Users map[string]string
	// Mechanisms offered for Users; default PLAIN and LOGIN.
	Mechanisms []string
	// RefusePlain answers AUTH PLAIN with 504 5.7.4, as Office 365 does.
	RefusePlain bool
	// ExtraAuth adds SASL mechanisms (such as XOAUTH2); the constructor
	// gets a function to record the authenticated user.
	ExtraAuth map[string]func(setUser func(string)) sasl.Server

	// OnMail, OnRcpt and OnData may refuse a command with an
	// *smtp.SMTPError; OnData sees the received message.
	OnMail func(from string) error
	OnRcpt func(to string) error
	OnData func(m Message) error

	// GreetingDelay holds back the greeting, for timeout tests.
	GreetingDelay time.Duration

	// Addr is the address to listen on; default 127.0.0.1:0. Set it to
	// bring an upstream back on the port of one that was down.
	Addr string

	// NoSMTPUTF8 makes the upstream not offer SMTPUTF8 (RFC 6531), as
	// many older servers do not.
	NoSMTPUTF8 bool

	// Hide lists EHLO keywords (PIPELINING, CHUNKING…) the upstream does
	// not offer, for clients that must do without them. Only on
	// connections without TLS.
	Hide []string

	// MaxConns, when positive, refuses connections beyond that many at
	// once with "421 4.3.2 Too many connections", as Office 365 does past a
	// few per mailbox.
	MaxConns int
}

// Message is one message an upstream accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	User string // authenticated user, or ""
	TLS  bool
	Helo string
	UTF8 bool   // MAIL had the SMTPUTF8 parameter
	Body string // MAIL's BODY= parameter (RFC 6152): "", "7BIT" or "8BITMIME"
}

// Upstream is a running go-smtp server on 127.0.0.1.
type Upstream struct {
	Addr string
	Host string
	Port int

	opts   UpstreamOptions
	server *smtp.Server

	mu       sync.Mutex
	cond     *sync.Cond
	messages []Message
	helos    []string
	sessions int
	auths    map[string]int // mechanism → successful logins
}

// StartUpstream starts a test upstream; it stops when the test ends.
func StartUpstream(t testing.TB, opts UpstreamOptions) *Upstream {
	t.Helper()
	u := &Upstream{opts: opts, auths: map[string]int{}}
	u.cond = sync.NewCond(&u.mu)
	s := smtp.NewServer(u)
	s.Domain = "upstream.test"
	s.ReadTimeout = 30 * time.Second
	s.WriteTimeout = 30 * time.Second
	s.MaxMessageBytes = 32 << 20
	s.AllowInsecureAuth = true
	s.EnableSMTPUTF8 = !opts.NoSMTPUTF8
	s.ErrorLog = log.New(io.Discard, "", 0)
	u.server = s

	var tlsConfig *tls.Config
	if opts.TLS != TLSNone {
		p := TestPKI(t)
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{p.Cert}, MinVersion: opts.MinTLS, MaxVersion: opts.MaxTLS}
		if opts.MinTLS != 0 && opts.MinTLS < tls.VersionTLS12 {
			// Go's servers refuse TLS 1.0 and 1.1 unless told otherwise.
			tlsConfig.MinVersion = opts.MinTLS
		}
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	switch opts.TLS {
	case TLSImplicit:
		ln = tls.NewListener(ln, tlsConfig)
	case TLSStartTLS:
		s.TLSConfig = tlsConfig
	}
	if opts.GreetingDelay > 0 {
		ln = &delayListener{Listener: ln, delay: opts.GreetingDelay}
	}
	if opts.MaxConns > 0 {
		ln = &capListener{Listener: ln, max: opts.MaxConns}
	}
	if len(opts.Hide) > 0 {
		ln = &hideListener{Listener: ln, hide: opts.Hide}
	}
	u.Addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(u.Addr)
	u.Host = host
	u.Port, _ = strconv.Atoi(port)
	go s.Serve(ln)
	t.Cleanup(func() {
		// Shutdown first: it lets each session end as its client (relay,
		// closed by now in most tests) hangs up. go-smtp's Close, while a
		// BDAT chunk is still being read, races with that read
		// (Conn.Close and handleBdat both use Conn.bdatPipe; go test
		// -race sees it).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	})
	return u
}

// FreeAddr returns a loopback address on which nothing listens, for an
// upstream that is down (and may come up there later, in this process or
// another). Until the test ends the port stays reserved (reservePort), so
// that no listener on 127.0.0.1:0 — relay's own, in this process or a
// child — is given it meanwhile and ends up delivering to itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, release, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return addr
}

// Close stops the upstream now: new connections are refused.
func (u *Upstream) Close() { u.server.Close() }

// Messages returns what the upstream accepted so far.
func (u *Upstream) Messages() []Message {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Message(nil), u.messages...)
}

// WaitMessages waits until the upstream holds at least n messages or the
// timeout passes, and returns them.
func (u *Upstream) WaitMessages(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() { u.cond.Broadcast() })
	defer timer.Stop()
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.messages) < n && time.Now().Before(deadline) {
		u.cond.Wait()
	}
	if len(u.messages) < n {
		t.Fatalf("upstream has %d messages after %v; want %d", len(u.messages), timeout, n)
	}
	return append([]Message(nil), u.messages...)
}

// Helos returns the EHLO/HELO names clients sent, in order.
func (u *Upstream) Helos() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.helos...)
}

// Sessions counts the SMTP sessions opened (each EHLO after STARTTLS
// opens another in go-smtp).
func (u *Upstream) Sessions() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sessions
}

// Logins counts successful logins with a mechanism.
func (u *Upstream) Logins(mech string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.auths[mech]
}

// NewSession implements smtp.Backend.
func (u *Upstream) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	u.mu.Lock()
	u.sessions++
	u.helos = append(u.helos, c.Hostname())
	u.mu.Unlock()
	return &upstreamSession{u: u, tls: isTLS, helo: c.Hostname()}, nil
}

type upstreamSession struct {
	u    *Upstream
	tls  bool
	helo string
	user string
	from string
	utf8 bool
	body string
	to   []string
}

func (s *upstreamSession) AuthMechanisms() []string {
	var mechs []string
	if s.u.opts.Users != nil {
		mechs = s.u.opts.Mechanisms
		if mechs == nil {
			mechs = []string{sasl.Plain, sasl.Login}
		}
	}
	for m := range s.u.opts.ExtraAuth {
		mechs = append(mechs, m)
	}
	return mechs
}

func (s *upstreamSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := s.u.opts.Users[user]; !ok || want != pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.login(user, mech)
		return nil
	}
	switch {
	case mech == sasl.Plain && s.u.opts.RefusePlain:
		return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 7, 4}, Message: "Unrecognized authentication type"}
	case mech == sasl.Plain && s.u.opts.Users != nil:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case mech == sasl.Login && s.u.opts.Users != nil:
		return sasllogin.NewServer(check), nil
	}
	if mk, ok := s.u.opts.ExtraAuth[mech]; ok {
		return mk(func(user string) { s.login(user, mech) }), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *upstreamSession) login(user, mech string) {
	s.user = user
	s.u.mu.Lock()
	s.u.auths[mech]++
	s.u.mu.Unlock()
}

func (s *upstreamSession) Mail(from string, opts *smtp.MailOptions) error {
	if (s.u.opts.Users != nil || s.u.opts.ExtraAuth != nil) && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.utf8 = opts != nil && opts.UTF8
	s.body = ""
	if opts != nil {
		s.body = string(opts.Body)
	}
	if err := s.checkASCII(from); err != nil {
		return err
	}
	if s.u.opts.OnMail != nil {
		if err := s.u.opts.OnMail(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}

func (s *upstreamSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.checkASCII(to); err != nil {
		return err
	}
	if s.u.opts.OnRcpt != nil {
		if err := s.u.opts.OnRcpt(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *upstreamSession) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	m := Message{From: s.from, To: append([]string(nil), s.to...), Data: buf.Bytes(), User: s.user, TLS: s.tls, Helo: s.helo, UTF8: s.utf8, Body: s.body}
	if s.u.opts.OnData != nil {
		if err := s.u.opts.OnData(m); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				se = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: err.Error()}
			}
			return se
		}
	}
	s.u.mu.Lock()
	s.u.messages = append(s.u.messages, m)
	s.u.mu.Unlock()
	s.u.cond.Broadcast()
	return nil
}

// checkASCII refuses a non-ASCII address in a transaction without
// SMTPUTF8, as RFC 6531 §3.5 has servers do.
func (s *upstreamSession) checkASCII(addr string) error {
	if s.utf8 {
		return nil
	}
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address without SMTPUTF8"}
		}
	}
	return nil
}

func (s *upstreamSession) Reset() { s.from, s.to, s.utf8, s.body = "", nil, false, "" }

func (s *upstreamSession) Logout() error { return nil }

// delayListener delays each accepted connection before go-smtp greets it.
type delayListener struct {
	net.Listener
	delay time.Duration
}

func (l *delayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	time.Sleep(l.delay)
	return c, nil
}

// XOAUTH2 makes opts an upstream that takes XOAUTH2 logins and checks each
// token with the authorization server, refusing bad ones in style.
func XOAUTH2(opts UpstreamOptions, auth *AuthServer, style AuthXOAUTH2Style) UpstreamOptions {
	return XOAUTH2Check(opts, func(token string) error {
		_, err := auth.Validate(context.Background(), token)
		return err
	}, style)
}

// XOAUTH2Check makes opts an upstream that takes XOAUTH2 logins whose
// token check accepts, refusing others in style.
func XOAUTH2Check(opts UpstreamOptions, check func(token string) error, style AuthXOAUTH2Style) UpstreamOptions {
	if opts.ExtraAuth == nil {
		opts.ExtraAuth = map[string]func(func(string)) sasl.Server{}
	}
	opts.ExtraAuth["XOAUTH2"] = func(setUser func(string)) sasl.Server {
		return NewAuthXOAUTH2Server(style, func(user, token string) error {
			if err := check(token); err != nil {
				return err
			}
			setUser(user)
			return nil
		})
	}
	return opts
}

// capListener refuses connections beyond max at once with a 421 greeting.
type capListener struct {
	net.Listener
	max int
	mu  sync.Mutex
	n   int
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.n >= l.max {
			l.mu.Unlock()
			c.Write([]byte("421 4.3.2 Too many connections\r\n"))
			c.Close()
			continue
		}
		l.n++
		l.mu.Unlock()
		return &capConn{Conn: c, release: sync.OnceFunc(func() {
			l.mu.Lock()
			l.n--
			l.mu.Unlock()
		})}, nil
	}
}

type capConn struct {
	net.Conn
	release func()
}

func (c *capConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// hideListener's connections rename the hidden keywords in EHLO replies,
// which go-smtp writes one line at a time, to "X-HIDDEN-…", which no
// client knows.
type hideListener struct {
	net.Listener
	hide []string
}

func (l *hideListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &hideConn{Conn: c, hide: l.hide}, nil
}

type hideConn struct {
	net.Conn
	hide []string
}

func (c *hideConn) Write(p []byte) (int, error) {
	if len(p) > 4 && bytes.HasPrefix(p, []byte("250")) {
		for _, k := range c.hide {
			word, _, _ := strings.Cut(strings.TrimSpace(string(p[4:])), " ")
			if strings.EqualFold(word, k) {
				q := append(append([]byte(nil), p[:4]...), "X-HIDDEN-"...)
				if _, err := c.Conn.Write(append(q, p[4:]...)); err != nil {
					return 0, err
				}
				return len(p), nil
			}
		}
	}
	return c.Conn.Write(p)
}
