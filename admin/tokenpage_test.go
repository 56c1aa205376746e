package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// oauthProfiles are two OAuth2 profiles, one per flow, for extra TOML.
func oauthProfiles(authURL, tokenURL, clientID, secret, upstreamHost, upstreamPort, caFile string) string {
	return `
[[oauth2_clients]]
name = "entra"
client_id = "` + clientID + `"
client_secret = "` + secret + `"
auth_url = "` + authURL + `"
token_url = "` + tokenURL + `"

[[profiles]]
name = "o365"
hostname = "` + upstreamHost + `"
port = ` + upstreamPort + `
use_starttls = true
tls_ca_file = "` + caFile + `"
username = "alarms@example.com"
oauth2_client = "entra"
scope = "mail"
access_token_timeout = "10s"

[[profiles]]
name = "gmail"
hostname = "` + upstreamHost + `"
port = ` + upstreamPort + `
use_starttls = true
tls_ca_file = "` + caFile + `"
username = "reports@example.com"
oauth2_client = "entra"
interactive = true
scope = "mail offline_access"
access_token_timeout = "10s"
`
}

// TestTokenPageButtons checks the seed's rules: Grant New Token only for
// interactive profiles; Refresh Token for non-interactive ones, and for
// interactive ones only with a refresh token. The server enforces the same
// rules for the POSTs and the API.
func TestTokenPageButtons(t *testing.T) {
	fake := &fakeTokens{authURL: "http://127.0.0.1:9/authorize"}
	caFile, _, _ := testpeer.TestPKI(t).Files(t) // tls_ca_file must hold a certificate
	h := startHarness(t, harnessOptions{
		extra:  oauthProfiles("http://127.0.0.1:9/authorize", "http://127.0.0.1:9/token", "id", "client-S3cret", "127.0.0.1", "25", caFile),
		tokens: func(*testing.T, *config.Config) Tokens { return fake },
	})
	cases := []struct {
		interactive, refresh bool
		grant, refreshBtn    bool
	}{
		{false, false, false, true},
		{false, true, false, true},
		{true, false, true, false},
		{true, true, true, true},
	}
	for _, c := range cases {
		profile := "o365"
		if c.interactive {
			profile = "gmail"
		}
		fake.mu.Lock()
		fake.statuses = []oauth.Status{{Profile: profile, Interactive: c.interactive, HasRefreshToken: c.refresh, State: oauth.StateAbsent}}
		fake.mu.Unlock()
		page := h.getOK("/profiles/" + profile + "/token")
		if got := strings.Contains(page, ">Grant New Token<"); got != c.grant {
			t.Errorf("interactive %v, refresh token %v: Grant New Token shown %v; want %v", c.interactive, c.refresh, got, c.grant)
		}
		if got := strings.Contains(page, ">Refresh Token<"); got != c.refreshBtn {
			t.Errorf("interactive %v, refresh token %v: Refresh Token shown %v; want %v", c.interactive, c.refresh, got, c.refreshBtn)
		}
		resp, _ := h.postForm("/profiles/"+profile+"/token", "/profiles/"+profile+"/token/refresh", nil)
		if wantOK := c.refreshBtn; (resp.StatusCode == http.StatusSeeOther) != wantOK {
			t.Errorf("interactive %v, refresh token %v: POST refresh = %s; want 303: %v", c.interactive, c.refresh, resp.Status, wantOK)
		}
		resp, _ = h.postForm("/profiles/"+profile+"/token", "/profiles/"+profile+"/token/grant", nil)
		if c.grant {
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, fake.authURL) {
				t.Errorf("POST grant = %s → %q; want 303 to the authorization URL", resp.Status, loc)
			}
		} else if resp.StatusCode != http.StatusConflict {
			t.Errorf("POST grant for a non-interactive profile = %s; want 409", resp.Status)
		}
		resp, body := h.postJSON("/api/tokens/"+profile+"/grant", `{}`)
		if c.grant {
			var g GrantStart
			if err := json.Unmarshal([]byte(body), &g); err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(g.AuthURL, fake.authURL) {
				t.Errorf("POST /api/tokens/%s/grant = %s %s; want the authorization URL", profile, resp.Status, body)
			}
		} else if resp.StatusCode != http.StatusConflict {
			t.Errorf("POST /api/tokens/%s/grant = %s; want 409", profile, resp.Status)
		}
	}
	// The refresh redirect lands on the page with the valid token.
	if page := h.getOK("/profiles/gmail/token?done=refreshed"); !strings.Contains(page, `id="token-state">valid<`) || !strings.Contains(page, "A new access token arrived.") {
		t.Errorf("token page after refresh:\n%s", page)
	}
	// A failed refresh shows the authorization server's own error text.
	fake.refresh = errors.New(`oauth2 token for profile "gmail": invalid_grant: Token has been expired or revoked.`)
	resp, body := h.postForm("/profiles/gmail/token", "/profiles/gmail/token/refresh", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "invalid_grant: Token has been expired or revoked.") {
		t.Errorf("failed refresh = %s; want 502 with the server's error:\n%s", resp.Status, body)
	}
	// The password and maildir profiles have no token page.
	for _, p := range []string{"mailhost", "local", "nosuch"} {
		if resp, _ := h.get("/profiles/" + p + "/token"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /profiles/%s/token = %s; want 404", p, resp.Status)
		}
	}
	// Forms carry tokens here too.
	if resp, _ := h.do(http.MethodPost, "/profiles/gmail/token/grant", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(url.Values{}.Encode())); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST grant without a CSRF token = %s; want 403", resp.Status)
	}
}

// fakeTokens is a token manager with fixed states, for the seed's button
// rules. Refresh makes a token valid; grants go to authURL.
type fakeTokens struct {
	mu       sync.Mutex
	statuses []oauth.Status
	authURL  string
	refresh  error
}

func (f *fakeTokens) Statuses() []oauth.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]oauth.Status(nil), f.statuses...)
}

func (f *fakeTokens) Refresh(_ context.Context, profile string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.statuses {
		if f.statuses[i].Profile == profile {
			f.statuses[i].Requests++
			if f.refresh != nil {
				f.statuses[i].Failures++
				f.statuses[i].LastError = f.refresh.Error()
				return f.refresh
			}
			f.statuses[i].State = oauth.StateValid
		}
	}
	return nil
}

func (f *fakeTokens) StartGrant(profile string) (string, error) {
	return f.authURL + "?state=" + url.QueryEscape(profile), nil
}

func (f *fakeTokens) CompleteGrant(_ context.Context, state, code string) (string, error) {
	return state, f.Refresh(context.Background(), state)
}

func (f *fakeTokens) DenyGrant(state, code, description string) string { return state }

func (f *fakeTokens) StartDevice(context.Context, string) (oauth.DeviceGrant, error) {
	return oauth.DeviceGrant{}, errors.New("the fake token manager has no device sign-in")
}

func (f *fakeTokens) CompleteRedirect(_ context.Context, profile, _ string) error {
	return f.Refresh(context.Background(), profile)
}

// TestTokenAPIFields: /api/tokens answers with the field names README
// documents, now that the API serves oauth.Status as it is.
func TestTokenAPIFields(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	fake := &fakeTokens{statuses: []oauth.Status{{
		Profile: "gmail", Interactive: true, State: oauth.StateInvalid, Expiry: at, HasRefreshToken: true,
		LastError: "invalid_grant: expired", Hint: "grant again", LastErrorAt: at, LastRefresh: at,
		Requests: 3, Failures: 1, DeviceSignIn: true,
		Device: &oauth.DeviceGrant{Profile: "gmail", Method: "device", State: oauth.DeviceFailed, UserCode: "ABCD-EFGH", VerificationURI: "https://example.com/device", Error: "expired_token", Hint: "start again"},
	}}}
	caFile, _, _ := testpeer.TestPKI(t).Files(t) // tls_ca_file must hold a certificate
	h := startHarness(t, harnessOptions{
		extra:  oauthProfiles("http://127.0.0.1:9/authorize", "http://127.0.0.1:9/token", "id", "client-S3cret", "127.0.0.1", "25", caFile),
		tokens: func(*testing.T, *config.Config) Tokens { return fake },
	})
	var sts []map[string]any
	if err := json.Unmarshal([]byte(h.getOK("/api/tokens")), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("GET /api/tokens: %v %v", sts, err)
	}
	for _, k := range []string{"profile", "interactive", "state", "expiry", "has_refresh_token", "last_error", "hint", "last_error_at", "last_refresh", "requests", "failures", "device_sign_in", "grant"} {
		if _, ok := sts[0][k]; !ok {
			t.Errorf("/api/tokens lacks %q: %v", k, sts[0])
		}
	}
	grant, _ := sts[0]["grant"].(map[string]any)
	for _, k := range []string{"method", "state", "user_code", "verification_uri", "error", "hint"} {
		if _, ok := grant[k]; !ok {
			t.Errorf("/api/tokens grant lacks %q: %v", k, grant)
		}
	}
	if grant["method"] != "device" || grant["state"] != "failed" {
		t.Errorf("grant = %v; want method device, state failed", grant)
	}
}
