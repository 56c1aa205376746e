package upstream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// oauthProfile configures an OAuth2 profile for u with tokens from auth,
// and returns its token source.
func oauthProfile(t *testing.T, u *testpeer.Upstream, auth *testpeer.AuthServer, timeout time.Duration) (*config.Profile, *oauth.TokenSource, *bytes.Buffer) {
	t.Helper()
	p := profileFor(u, func(p *config.Profile) {
		p.Name = "o365"
		p.UseSTARTTLS = true
		p.Username = "alarms@example.com"
		p.OAuth2Client = "test"
		p.Scope = "https://outlook.office365.com/.default"
		p.AccessTokenTimeout = config.Duration(timeout)
		p.RefreshBeforeExpiration = config.Duration(300 * time.Second)
		p.Client = &config.OAuth2Client{Name: "test", ClientID: "relay-test", ClientSecret: "relay-secret", TokenURL: auth.TokenURL}
	})
	cfg := &config.Config{Server: config.Server{DataDir: t.TempDir()}, Profiles: []*config.Profile{p}, OAuth2Clients: []*config.OAuth2Client{p.Client}}
	var logs bytes.Buffer
	m, err := oauth.NewManager(cfg, oauth.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return p, m.Source(p.Name), &logs
}

func TestXOAUTH2ClientCredentials(t *testing.T) {
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{})
	u := testpeer.StartUpstream(t, testpeer.XOAUTH2(testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS}, auth, testpeer.AuthOffice365Style))
	p, src, logs := oauthProfile(t, u, auth, 10*time.Second)
	var trace bytes.Buffer
	s := newSender(t, p, Options{Tokens: src, Debug: true, Logger: slog.New(slog.NewTextHandler(&trace, nil))})
	for i := 0; i < 3; i++ {
		if _, err := s.Send(context.Background(), message("ops@example.com")); err != nil {
			t.Fatalf("Send() = %v", err)
		}
	}
	msgs := u.Messages()
	if len(msgs) != 3 || msgs[0].User != "alarms@example.com" || !msgs[0].TLS {
		t.Fatalf("upstream got %+v", msgs)
	}
	if n := auth.TokenRequests("client_credentials"); n != 1 {
		t.Errorf("token requests = %d; want 1 for three messages", n)
	}
	tok, _ := src.Token(context.Background())
	for name, out := range map[string]string{"trace": trace.String(), "oauth log": logs.String()} {
		if strings.Contains(out, tok) || strings.Contains(out, "relay-secret") {
			t.Errorf("%s contains the access token or the client secret", name)
		}
	}
	if !strings.Contains(trace.String(), "AUTH XOAUTH2") {
		t.Errorf("trace lacks AUTH XOAUTH2:\n%s", trace.String())
	}
}

// TestXOAUTH2RefusedTokenIsReplacedOnce: a cached token the upstream
// refuses (Gmail style: a 334 JSON error, then 535) is dropped, a new one is
// fetched once, and the message goes out.
func TestXOAUTH2RefusedTokenIsReplacedOnce(t *testing.T) {
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{})
	refuseFirst := true
	opts := testpeer.XOAUTH2(testpeer.UpstreamOptions{TLS: testpeer.TLSImplicit}, auth, testpeer.AuthGmailStyle)
	check := opts.ExtraAuth["XOAUTH2"]
	opts.ExtraAuth["XOAUTH2"] = func(setUser func(string)) sasl.Server {
		if refuseFirst {
			refuseFirst = false
			return testpeer.NewAuthXOAUTH2Server(testpeer.AuthGmailStyle, func(string, string) error { return errors.New("revoked") })
		}
		return check(setUser)
	}
	u := testpeer.StartUpstream(t, opts)
	p, src, _ := oauthProfile(t, u, auth, 10*time.Second)
	p.UseSTARTTLS, p.UseSSL = false, true
	s := newSender(t, p, Options{Tokens: src})
	if _, err := s.Send(context.Background(), message("ops@example.com")); err != nil {
		t.Fatalf("Send() = %v; want success after one new token", err)
	}
	if n := auth.TokenRequests("client_credentials"); n != 2 {
		t.Errorf("token requests = %d; want 2 (the refused token replaced once)", n)
	}
	if u.Logins("XOAUTH2") != 1 || len(u.Messages()) != 1 {
		t.Errorf("logins %d, messages %d; want 1 and 1", u.Logins("XOAUTH2"), len(u.Messages()))
	}
}

// TestXOAUTH2RefusedTwiceIsTemporary: when the new token is refused too,
// the failure is a temporary AUTH error carrying Gmail's decoded reason.
func TestXOAUTH2RefusedTwiceIsTemporary(t *testing.T) {
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{})
	opts := testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, ExtraAuth: map[string]func(func(string)) sasl.Server{
		"XOAUTH2": func(func(string)) sasl.Server {
			return testpeer.NewAuthXOAUTH2Server(testpeer.AuthGmailStyle, func(string, string) error { return errors.New("no") })
		},
	}}
	u := testpeer.StartUpstream(t, opts)
	p, src, _ := oauthProfile(t, u, auth, 10*time.Second)
	s := newSender(t, p, Options{Tokens: src})
	_, err := s.Send(context.Background(), message("ops@example.com"))
	var ue *Error
	if !errors.As(err, &ue) || ue.Step != StepAuth || !ue.Temporary || ue.Code != 535 || !strings.Contains(ue.Message, "status 401") {
		t.Fatalf("Send() = %v; want a temporary AUTH 535 with the decoded 401", err)
	}
	if r := ue.Reply(); r.Code != 454 {
		t.Errorf("Reply() = %d; want 454 4.7.0", r.Code)
	}
	if n := auth.TokenRequests("client_credentials"); n != 2 {
		t.Errorf("token requests = %d; want 2", n)
	}
}

// TestTokenEndpointDownIsTemporary: no token within access_token_timeout
// is a temporary failure (454 4.7.0), never a bounce.
func TestTokenEndpointDownIsTemporary(t *testing.T) {
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{})
	if err := auth.SetTokenFailure(testpeer.AuthFailRefuse); err != nil {
		t.Fatal(err)
	}
	u := testpeer.StartUpstream(t, testpeer.XOAUTH2(testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS}, auth, testpeer.AuthOffice365Style))
	p, src, _ := oauthProfile(t, u, auth, 500*time.Millisecond)
	s := newSender(t, p, Options{Tokens: src})
	_, err := s.Send(context.Background(), message("ops@example.com"))
	var ue *Error
	if !errors.As(err, &ue) || ue.Step != StepToken || !ue.Temporary {
		t.Fatalf("Send() = %v; want a temporary token error", err)
	}
	if r := ue.Reply(); r.Code != 454 || r.EnhancedCode[0] != 4 {
		t.Errorf("Reply() = %d %v; want 454 4.7.0", r.Code, r.EnhancedCode)
	}
	var te *oauth.TokenError
	if !errors.As(err, &te) || !te.Temporary {
		t.Errorf("Send() = %v; want it to wrap a temporary *oauth.TokenError", err)
	}
}
