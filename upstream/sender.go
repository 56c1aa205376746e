// Package upstream delivers messages to an email profile's SMTP server:
// plain, implicit TLS or STARTTLS, only the TLS versions the profile
// allows, classic AUTH PLAIN/LOGIN or XOAUTH2 with tokens from a
// TokenSource, several messages over one connection, and every failure
// classified as temporary or permanent.
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relaymail/relay/config"
)

// TokenSource supplies OAuth 2.0 access tokens for XOAUTH2. The oauth
// package's *TokenSource implements it.
type TokenSource interface {
	// Token returns a valid access token, waiting at most the profile's
	// access_token_timeout.
	Token(ctx context.Context) (string, error)
	// Invalidate tells the source that the upstream refused token.
	Invalidate(token string)
}

// Dialer opens network connections; *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options are a Sender's settings beyond its profile.
type Options struct {
	// Tokens supplies access tokens; required for OAuth2 profiles.
	Tokens TokenSource
	// Logger receives the protocol trace when debugging is on.
	Logger *slog.Logger
	// Debug traces the dialogue even when the profile's debug is off
	// (relay test -v).
	Debug bool
	// Dialer opens TCP connections; default: a net.Dialer.
	Dialer Dialer
	// RootCAs replaces the system's certificate roots; tls_ca_file is
	// added to them either way.
	RootCAs *x509.CertPool
}

// Sender sends mail through one profile's upstream server. It is safe for
// concurrent use; each Dial makes a connection of its own.
type Sender struct {
	profile  *config.Profile
	opts     Options
	addr     string
	timeout  time.Duration
	tls      *tls.Config
	versions []uint16
	logger   *slog.Logger
}

// New prepares a Sender for profile p.
func New(p *config.Profile, opts Options) (*Sender, error) {
	if p.Kind != config.KindSMTP {
		return nil, fmt.Errorf("profile %q: kind %q has no upstream", p.Name, p.Kind)
	}
	if p.IsOAuth2() && opts.Tokens == nil {
		return nil, fmt.Errorf("profile %q: an OAuth2 profile needs a token source", p.Name)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	s := &Sender{
		profile:  p,
		opts:     opts,
		addr:     p.Addr(),
		timeout:  p.SMTPTimeout.D(),
		versions: p.TLSVersions,
		logger:   opts.Logger.With("profile", p.Name),
	}
	if len(s.versions) == 0 {
		s.versions = []uint16{tls.VersionTLS12}
	}
	roots := opts.RootCAs
	if len(p.CACerts) > 0 {
		roots = withCAs(roots, p.CACerts)
	}
	s.tls = &tls.Config{
		ServerName: p.Hostname,
		RootCAs:    roots,
		MinVersion: s.versions[0],
		MaxVersion: s.versions[len(s.versions)-1],
	}
	return s, nil
}

// withCAs returns pool (nil: the system's roots) with certs, tls_ca_file's
// certificates as config.Config.Resolve read them, added.
func withCAs(pool *x509.CertPool, certs []*x509.Certificate) *x509.CertPool {
	if pool == nil {
		var err error
		if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
	} else {
		pool = pool.Clone()
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

// Profile returns the profile the sender delivers for.
func (s *Sender) Profile() *config.Profile { return s.profile }

// Message is one message to send: the envelope and a body with CRLF line
// endings, streamed from Body. Lines longer than 998 octets are folded on
// the way (see foldWriter).
type Message struct {
	From string   // "" is the null sender of bounces
	To   []string // at least one
	Body io.Reader
	Size int64 // for SIZE=, if known
	// UTF8 is set when the addresses need SMTPUTF8 (NeedsSMTPUTF8): the
	// whole envelope for Send, the sender for Mail. Such a message is
	// refused (553 5.6.7) by an upstream without SMTPUTF8.
	UTF8 bool
	// UTF8Declared is the client's SMTPUTF8 at MAIL when the addresses do
	// not need it (RFC 6531 §3.4): sent when the upstream offers
	// SMTPUTF8, else the message goes without it, as it did before relay
	// kept the declaration, rather than bounce. After a Mail without
	// SMTPUTF8, Rcpt refuses a non-ASCII recipient (553 5.6.7).
	UTF8Declared bool
	// BodyType is BODY= of MAIL FROM, sent only when the client declared it
	// and the upstream offers 8BITMIME. A message declared 8BITMIME is
	// refused (554 5.6.3) by an upstream without 8BITMIME (RFC 6152 §3).
	BodyType string // as the client declared at MAIL: "", "7BIT" or "8BITMIME" (RFC 6152)
}

// Result is the outcome of a Send in which the upstream took part.
type Result struct {
	// Rcpts has one entry per Message.To: nil when the upstream accepted
	// the message for that recipient, else the *Error for it.
	Rcpts []error
	// Reply is the upstream's answer to the end of DATA, if it got that far.
	Reply string
}

// Accepted counts the recipients the upstream accepted.
func (r *Result) Accepted() int {
	n := 0
	for _, err := range r.Rcpts {
		if err == nil {
			n++
		}
	}
	return n
}

// Send delivers one message on a connection of its own.
func (s *Sender) Send(ctx context.Context, msg *Message) (*Result, error) {
	c, err := s.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Send(ctx, msg)
}

// Dial connects, secures and authenticates a connection to the upstream.
// An XOAUTH2 token the upstream refuses is invalidated and replaced once.
func (s *Sender) Dial(ctx context.Context) (*Conn, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.authenticate(ctx); err != nil {
		// RFC 5321 §4.1.1.10: QUIT before closing, unless the connection
		// is already broken (Close knows).
		c.Close()
		var ue *Error
		if !s.profile.IsOAuth2() || !errors.As(err, &ue) || ue.Step != StepAuth || ue.Code == 0 {
			return nil, err
		}
		// The token was refused: it was dropped; try once with a new one,
		// on a fresh connection (a server may close after a failed AUTH).
		s.logger.Warn("upstream refused the access token; retrying with a new one", "upstream", s.addr, "error", ue.Error())
		if c, err = s.dial(ctx); err != nil {
			return nil, err
		}
		if err := c.authenticate(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// dial opens the connection up to and including EHLO over TLS: the
// greeting (RFC 5321 §4.3.1), EHLO with helo_name, and with use_starttls
// STARTTLS (RFC 3207) and EHLO again.
func (s *Sender) dial(ctx context.Context) (c *Conn, err error) {
	var tr *trace
	if s.profile.Debug || s.opts.Debug {
		tr = newTrace(s.logger, s.addr)
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	raw, err := s.opts.Dialer.DialContext(dctx, "tcp", s.addr)
	cancel()
	if err != nil {
		return nil, classify(s.addr, StepConnect, err)
	}
	tr.note("connected to " + s.addr)
	tc := &timeoutConn{Conn: raw, timeout: s.timeout}
	conn := net.Conn(tc)
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		stop()
		if err != nil {
			raw.Close()
			if ctx.Err() != nil {
				err = classify(s.addr, StepConnect, ctx.Err())
			}
		}
	}()

	helo := s.heloName(raw)
	if s.profile.UseSSL {
		if conn, err = s.handshake(ctx, conn); err != nil {
			return nil, err
		}
	}
	w := newWire(conn, tr)
	if err := greeting(w); err != nil {
		ue := classify(s.addr, StepGreeting, err)
		if !s.profile.UseSSL && !tc.read && isTimeout(err) {
			// A server on a port for implicit TLS waits for the
			// handshake and sends nothing (RFC 8314 §3.3); so does one
			// too slow to greet.
			ue.Message += "; the server sent nothing: if this port expects implicit TLS (usually 465), set use_ssl = true"
		}
		return nil, ue
	}
	ext, err := ehlo(w, helo)
	if err != nil {
		return nil, classify(s.addr, StepEHLO, err)
	}
	if s.profile.UseSTARTTLS {
		if err := startTLS(w, ext); err != nil {
			return nil, classify(s.addr, StepSTARTTLS, err)
		}
		if conn, err = s.handshake(ctx, conn); err != nil {
			return nil, err
		}
		w = newWire(conn, tr)
		if ext, err = ehlo(w, helo); err != nil {
			return nil, classify(s.addr, StepEHLO, err)
		}
	}
	_, secure := conn.(*tls.Conn)
	return &Conn{sender: s, wire: w, ext: ext, raw: raw, secure: secure}, nil
}

// greeting reads the server's 220 (RFC 5321 §4.3.1). The client speaks
// after it; a server talking ahead of it is broken or hostile.
func greeting(w *wire) error {
	rep, err := w.read()
	return expect220Alone(w, rep, err, "its greeting")
}

// expect220Alone checks that the reply to what went before is a 220 and
// that nothing follows it: the client speaks next.
func expect220Alone(w *wire, rep *reply, err error, after string) error {
	if err != nil {
		return err
	}
	if err := rep.expect(220); err != nil {
		return err
	}
	if n := w.r.Buffered(); n > 0 {
		return fmt.Errorf("server sent %d bytes after %s", n, after)
	}
	return nil
}

// ehlo greets the server and returns its extensions. A server that does
// not know EHLO (500, 502) is greeted with HELO and offers none (RFC 5321
// §3.2).
func ehlo(w *wire, name string) (extensions, error) {
	rep, err := w.cmd("EHLO " + name)
	if err != nil {
		return nil, err
	}
	if rep.code == 250 {
		return parseEHLO(rep), nil
	}
	if rep.code != 500 && rep.code != 502 {
		return nil, rep.err()
	}
	if rep, err = w.cmd("HELO " + name); err != nil {
		return nil, err
	}
	return extensions{}, rep.expect(250)
}

// startTLS asks for TLS (RFC 3207 §4) on the plain connection.
func startTLS(w *wire, ext extensions) error {
	if !ext.has("STARTTLS") {
		return errors.New("the server does not offer STARTTLS; use_starttls is set, so relay will not send in the clear")
	}
	// Plaintext after the 220 would be read as if it came over TLS (the
	// STARTTLS injection of CVE-2011-0411).
	rep, err := w.cmd("STARTTLS")
	return expect220Alone(w, rep, err, "agreeing to STARTTLS, in the clear")
}

// handshake runs the TLS client handshake and checks the negotiated
// version against ssl_protocols, which may list versions with gaps.
func (s *Sender) handshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	tc := tls.Client(conn, s.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		msg := fmt.Sprintf("%v (allowed TLS versions: %s)", err, s.versionNames())
		if h := s.handshakeHint(err); h != "" {
			msg += "; " + h
		}
		return nil, &Error{Addr: s.addr, Step: StepTLS, Temporary: true, Err: err, Message: msg}
	}
	v := tc.ConnectionState().Version
	for _, allowed := range s.versions {
		if v == allowed {
			return tc, nil
		}
	}
	tc.Close()
	return nil, &Error{Addr: s.addr, Step: StepTLS, Temporary: true,
		Message: fmt.Sprintf("server negotiated %s, which ssl_protocols does not allow (allowed: %s)", config.TLSVersionName(v), s.versionNames())}
}

// handshakeHint names the profile setting that a failed TLS handshake
// most likely needs, or "".
func (s *Sender) handshakeHint(err error) string {
	var (
		rh       tls.RecordHeaderError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case s.profile.UseSSL && errors.As(err, &rh) && bytes.HasPrefix(rh.RecordHeader[:], []byte("220")):
		// The server greeted in plain text where the handshake was due:
		// the port is for plain SMTP and STARTTLS.
		return "the server greeted in plain text: this port (usually 587 or 25) takes STARTTLS, so set use_ssl = false and use_starttls = true"
	case errors.As(err, &unknown):
		return "if the server's certificate comes from a private CA, set tls_ca_file to that CA's certificate (PEM)"
	case errors.As(err, &hostname):
		return "set hostname to a name the server's certificate holds (relay connects to that name and checks the certificate against it), not an address or an alias"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "the server's certificate has expired or is not yet valid: renew it, or check this machine's clock"
	}
	return ""
}

func (s *Sender) versionNames() string {
	names := make([]string, len(s.versions))
	for i, v := range s.versions {
		names[i] = config.TLSVersionName(v)
	}
	return strings.Join(names, ", ")
}

// heloName is the profile's helo_name, else this machine's FQDN, else an
// address literal (RFC 5321 §4.1.4), never "localhost".
func (s *Sender) heloName(conn net.Conn) string {
	if s.profile.HELOName != "" {
		return s.profile.HELOName
	}
	if name := hostFQDN(); name != "" {
		return name
	}
	return addressLiteral(conn.LocalAddr())
}

// timeoutConn applies smtp_timeout to every read and write, as the seed
// describes it ("when connecting to, reading from, and writing to").
type timeoutConn struct {
	net.Conn
	timeout time.Duration
	read    bool // the server has sent an octet (read by dial, in the same goroutine)
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read = true
	}
	return n, err
}

func (c *timeoutConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// NeedsSMTPUTF8 reports whether one of addrs is not ASCII, which only
// SMTPUTF8 lets through (RFC 6531 §3.4): such an envelope cannot go to an
// upstream without SMTPUTF8. A declaration with ASCII addresses is passed
// on where the upstream offers SMTPUTF8 and dropped where it does not
// (Message.UTF8Declared): the message is delivered, not refused.
func NeedsSMTPUTF8(addrs ...string) bool {
	for _, a := range addrs {
		for i := 0; i < len(a); i++ {
			if a[i] >= utf8.RuneSelf {
				return true
			}
		}
	}
	return false
}
