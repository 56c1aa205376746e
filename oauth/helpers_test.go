package oauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// clock is an injectable clock that tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// prof describes one OAuth2 profile for testConfig.
type prof struct {
	Name          string
	Interactive   bool
	Scope         string
	Timeout       string // access_token_timeout
	RefreshBefore string // refresh_before_expiration
	DefaultExp    string // default_access_token_expiration
	AuthParams    map[string]string
	CodeParams    map[string]string
	CCParams      map[string]string
	RefreshParams map[string]string
}

// env is one test's authorization server, data directory and Manager.
type env struct {
	t        *testing.T
	as       *testpeer.AuthServer
	dir      string
	logs     *testpeer.Buffer
	clock    *clock // nil: real time
	callback *httptest.Server
	cbMu     sync.Mutex
	cbMgr    *oauth.Manager
	ahead    bool
	seen     []string // secrets handed out, for checkLogs
}

func newEnv(t *testing.T, opts testpeer.AuthOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), logs: &testpeer.Buffer{}}
	// The redirect URI must be registered before the server starts, so
	// the callback listener comes first and finds its Manager later.
	e.callback = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.cbMu.Lock()
		m := e.cbMgr
		e.cbMu.Unlock()
		if m == nil || r.URL.Path != "/oauth2/callback" {
			http.NotFound(w, r)
			return
		}
		serveCallback(m, w, r)
	}))
	t.Cleanup(e.callback.Close)
	opts.RedirectURIs = append(opts.RedirectURIs, e.redirectURL())
	e.as = testpeer.StartAuthServer(t, opts)
	t.Cleanup(e.checkLogs)
	return e
}

// serveCallback plays the redirect URI for this package's tests: it ends
// the grant the redirect names, as the admin listener's /oauth2/callback
// does (package admin), and says how it went.
func serveCallback(m *oauth.Manager, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		m.DenyGrant(q.Get("state"), e, q.Get("error_description"))
		http.Error(w, "Grant failed: "+e, http.StatusBadRequest)
		return
	}
	profile, err := m.CompleteGrant(r.Context(), q.Get("state"), q.Get("code"))
	if err != nil {
		http.Error(w, "Grant failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "Token granted for profile %s\n", profile)
}

func (e *env) redirectURL() string { return e.callback.URL + "/oauth2/callback" }

// config builds a validated configuration with one OAuth2 client for the
// authorization server and the given profiles.
func (e *env) config(profiles ...prof) *config.Config {
	e.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\ndata_dir = %q\n\n", e.dir)
	fmt.Fprintf(&b, "[[oauth2_clients]]\nname = \"test\"\nclient_id = \"relay-test\"\nclient_secret = \"relay-secret\"\n")
	fmt.Fprintf(&b, "auth_url = %q\ntoken_url = %q\nredirect_url = %q\n\n", e.as.AuthURL, e.as.TokenURL, e.redirectURL())
	for _, p := range profiles {
		fmt.Fprintf(&b, "[[profiles]]\nname = %q\nhostname = \"smtp.example.com\"\nport = 587\nuse_starttls = true\n", p.Name)
		fmt.Fprintf(&b, "username = \"alarms@example.com\"\noauth2_client = \"test\"\ninteractive = %t\n", p.Interactive)
		scope := p.Scope
		if scope == "" {
			scope = "mail"
		}
		fmt.Fprintf(&b, "scope = %q\n", scope)
		for k, v := range map[string]string{"access_token_timeout": p.Timeout, "refresh_before_expiration": p.RefreshBefore, "default_access_token_expiration": p.DefaultExp} {
			if v != "" {
				fmt.Fprintf(&b, "%s = %q\n", k, v)
			}
		}
		for _, tbl := range []struct {
			name string
			m    map[string]string
		}{
			{"authorization_request_params", p.AuthParams},
			{"authorization_code_token_params", p.CodeParams},
			{"client_credentials_token_params", p.CCParams},
			{"refresh_token_params", p.RefreshParams},
		} {
			if len(tbl.m) == 0 {
				continue
			}
			fmt.Fprintf(&b, "[profiles.%s]\n", tbl.name)
			keys := make([]string, 0, len(tbl.m))
			for k := range tbl.m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "%s = %q\n", k, tbl.m[k])
			}
		}
		b.WriteString("\n")
	}
	cfg, err := config.Parse("test.toml", []byte(b.String()))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		e.t.Fatalf("config.Parse:\n%s\n%v", b.String(), err)
	}
	return cfg
}

// manager starts a Manager on the env's data directory; it is closed when
// the test ends.
func (e *env) manager(cfg *config.Config) *oauth.Manager {
	e.t.Helper()
	opts := oauth.Options{
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RefreshAhead: e.ahead,
	}
	if e.clock != nil {
		opts.Now = e.clock.Now
	}
	m, err := oauth.NewManager(cfg, opts)
	if err != nil {
		e.t.Fatalf("NewManager: %v", err)
	}
	e.t.Cleanup(func() { m.Close() })
	e.cbMu.Lock()
	e.cbMgr = m
	e.cbMu.Unlock()
	return m
}

// record reads the persisted record of profile from disk.
func (e *env) record(profile string) *oauth.Record {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, "tokens", profile+".json"))
	if err != nil {
		e.t.Fatalf("read token file: %v", err)
	}
	var rec oauth.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		e.t.Fatalf("token file: %v", err)
	}
	return &rec
}

// grant runs the interactive flow as a person would: StartGrant, the
// consent page in a browser-like client, the redirect to the callback.
func (e *env) grant(m *oauth.Manager, profile string) {
	e.t.Helper()
	authURL, err := m.StartGrant(profile)
	if err != nil {
		e.t.Fatalf("StartGrant(%q) = %v", profile, err)
	}
	resp, err := e.as.AuthConsent(context.Background(), browser(e.t), authURL, true)
	if err != nil {
		e.t.Fatalf("consent: %v", err)
	}
	body := readAll(e.t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Token granted") {
		e.t.Fatalf("callback answered %s:\n%s", resp.Status, body)
	}
}

// remember notes a secret that must not reach the log.
func (e *env) remember(secret string) {
	e.cbMu.Lock()
	e.seen = append(e.seen, secret)
	e.cbMu.Unlock()
}

// checkLogs fails the test if a secret reached the log: the client
// secret, or any token persisted or handed out.
func (e *env) checkLogs() {
	logs := e.logs.String()
	if e.t.Failed() || os.Getenv("RELAY_TEST_LOGS") != "" {
		e.t.Logf("relay log:\n%s", logs)
	}
	e.cbMu.Lock()
	secrets := append([]string{"relay-secret"}, e.seen...)
	e.cbMu.Unlock()
	files, _ := filepath.Glob(filepath.Join(e.dir, "tokens", "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec oauth.Record
		if json.Unmarshal(data, &rec) == nil {
			secrets = append(secrets, rec.AccessToken, rec.RefreshToken)
		}
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a secret reached the log:\n%s", logs)
			return
		}
	}
}

func browser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func token(t testing.TB, s *oauth.TokenSource) string {
	t.Helper()
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatalf("Token() = %v", err)
	}
	if tok == "" {
		t.Fatal("Token() returned an empty token")
	}
	return tok
}
