package oauth_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// upstream is a go-smtp server offering XOAUTH2 only, checking tokens with
// the test authorization server.
type upstream struct {
	addr  string
	style testpeer.AuthXOAUTH2Style
	as    *testpeer.AuthServer

	mu            sync.Mutex
	initialResp   []bool // per AUTH: did the client send an initial response?
	authenticated []string
}

func startUpstream(t *testing.T, as *testpeer.AuthServer, style testpeer.AuthXOAUTH2Style) *upstream {
	t.Helper()
	u := &upstream{as: as, style: style}
	srv := smtp.NewServer(u)
	srv.Domain = "upstream.test"
	srv.AllowInsecureAuth = true // loopback test without TLS
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *upstream) NewSession(*smtp.Conn) (smtp.Session, error) { return &upstreamSession{u: u}, nil }

type upstreamSession struct{ u *upstream }

func (s *upstreamSession) AuthMechanisms() []string { return []string{oauth.XOAUTH2} }

func (s *upstreamSession) Auth(mech string) (sasl.Server, error) {
	if mech != oauth.XOAUTH2 {
		return nil, errors.New("unsupported mechanism")
	}
	srv := testpeer.NewAuthXOAUTH2Server(s.u.style, func(user, token string) error {
		if _, err := s.u.as.Validate(context.Background(), token); err != nil {
			return err
		}
		s.u.mu.Lock()
		s.u.authenticated = append(s.u.authenticated, user)
		s.u.mu.Unlock()
		return nil
	})
	return &recordingServer{srv: srv, u: s.u}, nil
}

func (s *upstreamSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *upstreamSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *upstreamSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (s *upstreamSession) Reset()                               {}
func (s *upstreamSession) Logout() error                        { return nil }

// recordingServer notes whether AUTH came with an initial response.
type recordingServer struct {
	srv   sasl.Server
	u     *upstream
	first bool
}

func (r *recordingServer) Next(resp []byte) ([]byte, bool, error) {
	if !r.first {
		r.first = true
		r.u.mu.Lock()
		r.u.initialResp = append(r.u.initialResp, resp != nil)
		r.u.mu.Unlock()
	}
	return r.srv.Next(resp)
}

func dialAuth(t *testing.T, addr string, c *oauth.XOAUTH2Client) error {
	t.Helper()
	cl, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Hello("relay.test"); err != nil {
		t.Fatal(err)
	}
	err = cl.Auth(c)
	if err == nil {
		// The session goes on after AUTH.
		if err := cl.Noop(); err != nil {
			t.Errorf("NOOP after AUTH: %v", err)
		}
	}
	return err
}

func TestXOAUTH2RoundTrip(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365"}))
	tok := token(t, m.Source("o365"))
	e.remember(tok)

	for _, style := range []testpeer.AuthXOAUTH2Style{testpeer.AuthGmailStyle, testpeer.AuthOffice365Style} {
		u := startUpstream(t, e.as, style)
		c := oauth.NewXOAUTH2Client("alarms@example.com", tok)
		if err := dialAuth(t, u.addr, c); err != nil {
			t.Fatalf("style %d: Auth with a valid token = %v", style, err)
		}
		if c.ServerError() != nil {
			t.Errorf("ServerError() = %v after success", c.ServerError())
		}
		u.mu.Lock()
		if len(u.initialResp) != 1 || u.initialResp[0] {
			t.Errorf("initial responses = %v; want AUTH XOAUTH2 without one (RFC 4954 §4 two-step form)", u.initialResp)
		}
		if len(u.authenticated) != 1 || u.authenticated[0] != "alarms@example.com" {
			t.Errorf("authenticated = %v", u.authenticated)
		}
		u.mu.Unlock()
	}
}

func TestXOAUTH2GmailStyleError(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	u := startUpstream(t, e.as, testpeer.AuthGmailStyle)
	c := oauth.NewXOAUTH2Client("alarms@example.com", "ya29.not-a-valid-token")
	err := dialAuth(t, u.addr, c)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Fatalf("Auth with a bad token = %v; want 535 5.7.8", err)
	}
	xe := c.ServerError()
	if xe == nil {
		t.Fatal("ServerError() = nil; want the decoded JSON challenge")
	}
	if *xe != (oauth.XOAUTH2Error{Status: "401", Schemes: "Bearer", Scope: "https://mail.google.com/"}) || !xe.TokenRefused() {
		t.Errorf("ServerError() = %+v", xe)
	}
}

func TestXOAUTH2Office365StyleError(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	u := startUpstream(t, e.as, testpeer.AuthOffice365Style)
	c := oauth.NewXOAUTH2Client("alarms@example.com", "eyJ0eXAi.bad")
	err := dialAuth(t, u.addr, c)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 3}) {
		t.Fatalf("Auth with a bad token = %v; want 535 5.7.3", err)
	}
	if c.ServerError() != nil {
		t.Errorf("ServerError() = %v; Office 365 sends no challenge", c.ServerError())
	}
}

// TestXOAUTH2RefusedTokenRetry is the upstream sender's recovery in small:
// the server refuses a token the cache still holds (revoked before its
// expiry); the sender invalidates it, gets one new token and succeeds.
func TestXOAUTH2RefusedTokenRetry(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365"}))
	s := m.Source("o365")
	u := startUpstream(t, e.as, testpeer.AuthGmailStyle)
	old := token(t, s)
	e.remember(old)
	// RFC 7009 revocation at the authorization server.
	resp, err := http.PostForm(e.as.RevokeURL, url.Values{"token": {old}, "client_id": {"relay-test"}, "client_secret": {"relay-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: %s", resp.Status)
	}

	c := oauth.NewXOAUTH2Client("alarms@example.com", old)
	if err := dialAuth(t, u.addr, c); err == nil || c.ServerError() == nil || !c.ServerError().TokenRefused() {
		t.Fatalf("Auth with a revoked token = %v, server error %v; want a refusal", err, c.ServerError())
	}
	s.Invalidate(old)
	tok := token(t, s)
	e.remember(tok)
	if tok == old {
		t.Fatal("Token() after Invalidate returned the refused token")
	}
	if err := dialAuth(t, u.addr, oauth.NewXOAUTH2Client("alarms@example.com", tok)); err != nil {
		t.Fatalf("Auth with the new token = %v", err)
	}
	if n := e.as.TokenRequests(""); n != 2 {
		t.Errorf("token requests = %d; want 2", n)
	}
}
