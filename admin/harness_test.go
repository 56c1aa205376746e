package admin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/relay"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// Secrets that appear in the test configuration; no page or API answer may
// show them.
const (
	upstreamPassword = "S3cret-Passw0rd-of-the-mailhost"
	adminPassword    = "Adm1n-Passw0rd-for-the-pages"
	clientSecret     = "Cl1ent-S3cret-of-entra"
)

// harness is a running relay server with its admin listener, a real
// loopback upstream behind the "mailhost" profile, and an HTTP client with
// a cookie jar that acts as a browser.
type harness struct {
	t       *testing.T
	URL     string // the admin listener, http://127.0.0.1:PORT
	SMTP    string // relay's SMTP listener
	Relay   *relay.Server
	Admin   *Server
	Up      *testpeer.Upstream
	Metrics *Metrics
	Config  *config.Config
	Client  *http.Client
	Tokens  Tokens
	DataDir string

	password string // sent as basic auth when set
}

type harnessOptions struct {
	upstream     testpeer.UpstreamOptions
	upstreamAddr string // instead of a running upstream: one that is down
	passwordHash string // admin.password_hash
	extra        string // more TOML, appended
	// tokens makes a token manager for the configuration, once the
	// admin listener's address (and so the redirect URL) is known.
	tokens func(t *testing.T, cfg *config.Config) Tokens
	// auth adds the OAuth2 profiles "o365" (client credentials) and
	// "gmail" (interactive) with a real oauth.Manager getting tokens from
	// this authorization server; the upstream checks them with it.
	auth *testpeer.AuthServer
}

func startHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	pki := testpeer.TestPKI(t)
	caFile, _, _ := pki.Files(t)
	upAddr := o.upstreamAddr
	var up *testpeer.Upstream
	if upAddr == "" {
		uo := o.upstream
		uo.TLS = testpeer.TLSStartTLS
		if uo.Users == nil {
			uo.Users = map[string]string{"alarms@plant.example.com": upstreamPassword}
		}
		if as := o.auth; as != nil {
			uo.ExtraAuth = map[string]func(func(string)) sasl.Server{oauth.XOAUTH2: func(setUser func(string)) sasl.Server {
				return testpeer.NewAuthXOAUTH2Server(testpeer.AuthOffice365Style, func(user, token string) error {
					if _, err := as.Validate(context.Background(), token); err != nil {
						return err
					}
					setUser(user)
					return nil
				})
			}}
		}
		up = testpeer.StartUpstream(t, uo)
		upAddr = up.Addr
	}
	host, port, _ := net.SplitHostPort(upAddr)
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	extra := o.extra
	if o.auth != nil {
		extra += oauthProfiles(o.auth.AuthURL, o.auth.TokenURL, "relay-test", clientSecret, host, port, caFile)
	}
	text := fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "mailhost"

[queue]
min_backoff = "1h"
max_backoff = "2h"

[admin]
listen = %q
password_hash = %q

[[profiles]]
name = "mailhost"
description = "On-site Exchange"
hostname = %q
port = %s
use_starttls = true
tls_ca_file = %q
username = "alarms@plant.example.com"
password = %q
smtp_timeout = "5s"

[[profiles]]
name = "local"
kind = "maildir"
path = %q
%s`, dataDir, adminLn.Addr().String(), o.passwordHash, host, port, caFile, upstreamPassword, filepath.Join(dataDir, "maildir"), extra)
	cfg, err := config.Parse("test.toml", []byte(text))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var tokens Tokens
	var manager *oauth.Manager
	switch {
	case o.tokens != nil:
		tokens = o.tokens(t, cfg)
	case o.auth != nil:
		manager, err = oauth.NewManager(cfg, oauth.Options{DataDir: dataDir, Logger: logger})
		if err != nil {
			t.Fatalf("oauth.NewManager: %v", err)
		}
		t.Cleanup(func() { manager.Close() })
		tokens = manager
	}
	sp, err := spool.Open(filepath.Join(dataDir, "spool"), spool.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics()
	rs, err := relay.NewServer(cfg, relay.Options{
		Logger:     logger,
		Spool:      sp,
		Events:     metrics.Observe,
		Transports: testTransports(manager),
	})
	if err != nil {
		t.Fatalf("relay.NewServer: %v", err)
	}
	smtpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go rs.Serve(smtpLn)
	qctx, stopQueue := context.WithCancel(context.Background())
	queueDone := make(chan struct{})
	go func() { rs.RunQueue(qctx); close(queueDone) }()

	as, err := New(Options{Relay: rs, Tokens: tokens, Metrics: metrics, Logger: logger, SendTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- as.Serve(adminLn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := as.Shutdown(ctx); err != nil {
			t.Errorf("admin Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("admin Serve: %v", err)
		}
		rs.Close()
		stopQueue()
		<-queueDone
		sp.Close()
	})
	jar, _ := cookiejar.New(nil)
	return &harness{
		t: t, URL: "http://" + adminLn.Addr().String(), SMTP: smtpLn.Addr().String(),
		Relay: rs, Admin: as, Up: up, Metrics: metrics, Config: cfg, Tokens: tokens, DataDir: dataDir,
		Client: &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// testTransports makes relay's own transports; OAuth2 profiles get their
// tokens from m, or, in a test without a manager, fail when used.
func testTransports(m *oauth.Manager) relay.TransportFactory {
	transports := relay.Transports(upstream.Options{}, m)
	return func(p *config.Profile) (relay.Transport, error) {
		if p.IsOAuth2() && m == nil {
			return failingTransport{fmt.Errorf("profile %q: no token manager in this test", p.Name)}, nil
		}
		return transports(p)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// do sends a request like a browser: cookies kept, redirects not followed.
func (h *harness) do(method, path string, header http.Header, body io.Reader) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h.password != "" {
		req.SetBasicAuth("admin", h.password)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

func (h *harness) get(path string) (*http.Response, string) {
	h.t.Helper()
	return h.do(http.MethodGet, path, nil, nil)
}

// getOK fetches a page or answer that must be 200.
func (h *harness) getOK(path string) string {
	h.t.Helper()
	resp, body := h.get(path)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET %s = %s: %s; want 200", path, resp.Status, body)
	}
	return body
}

// postForm submits a form with the CSRF token of the page at formPage.
func (h *harness) postForm(formPage, action string, fields url.Values) (*http.Response, string) {
	h.t.Helper()
	page := h.getOK(formPage)
	v := url.Values{}
	for k, vs := range fields {
		v[k] = vs
	}
	v.Set("csrf", csrfOf(h.t, page))
	return h.do(http.MethodPost, action, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(v.Encode()))
}

// postJSON calls an API write.
func (h *harness) postJSON(path, body string) (*http.Response, string) {
	h.t.Helper()
	return h.do(http.MethodPost, path, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// sendSMTP submits one message to relay as a legacy application would.
func (h *harness) sendSMTP(from, to, body string) string {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.SMTP, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	read := func() string {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				h.t.Fatalf("SMTP read: %v", err)
			}
			last = strings.TrimRight(line, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last
			}
		}
	}
	cmd := func(line, want string) string {
		fmt.Fprintf(c, "%s\r\n", line)
		got := read()
		if !strings.HasPrefix(got, want) {
			h.t.Fatalf("SMTP %q → %q; want %s", line, got, want)
		}
		return got
	}
	read()
	cmd("EHLO app.example.com", "250")
	cmd("MAIL FROM:<"+from+">", "250")
	cmd("RCPT TO:<"+to+">", "250")
	cmd("DATA", "354")
	fmt.Fprintf(c, "%s\r\n.\r\n", strings.ReplaceAll(body, "\n", "\r\n"))
	reply := read()
	cmd("QUIT", "221")
	return reply
}

func cookieJar() (http.CookieJar, error) { return cookiejar.New(nil) }
