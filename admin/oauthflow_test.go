package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// startOAuth runs the harness with the real test authorization server,
// which accepts the admin listener's callback on any loopback port.
func startOAuth(t *testing.T, ao testpeer.AuthOptions) (*harness, *testpeer.AuthServer) {
	t.Helper()
	ao.RedirectURIs = []string{"http://127.0.0.1/oauth2/callback"}
	ao.ClientSecret = clientSecret
	as := testpeer.StartAuthServer(t, ao)
	return startHarness(t, harnessOptions{auth: as}), as
}

func (h *harness) token(profile string) oauth.Status {
	h.t.Helper()
	var st oauth.Status
	if err := json.Unmarshal([]byte(h.getOK("/api/tokens/"+profile)), &st); err != nil {
		h.t.Fatal(err)
	}
	return st
}

// TestRefreshTokenClientCredentials: the Manage Token page of a
// non-interactive profile offers Refresh Token only; clicking it obtains a
// token from the authorization server, the page shows it valid, and a test
// email goes out with it over XOAUTH2.
func TestRefreshTokenClientCredentials(t *testing.T) {
	h, as := startOAuth(t, testpeer.AuthOptions{})
	page := h.getOK("/profiles/o365/token")
	if !strings.Contains(page, `id="token-state">absent<`) || !strings.Contains(page, ">Refresh Token<") || strings.Contains(page, ">Grant New Token<") {
		t.Fatalf("token page of o365 before a token:\n%s", page)
	}
	resp, _ := h.postForm("/profiles/o365/token", "/profiles/o365/token/refresh", nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/profiles/o365/token?done=refreshed" {
		t.Fatalf("POST refresh = %s → %q; want 303 back to the page", resp.Status, loc)
	}
	page = h.getOK("/profiles/o365/token?done=refreshed")
	if !strings.Contains(page, `id="token-state">valid<`) || !strings.Contains(page, "A new access token arrived.") || !strings.Contains(page, "(in 59m)") {
		t.Errorf("token page after refresh lacks the valid token expiring in an hour:\n%s", page)
	}
	if n := as.TokenRequests("client_credentials"); n != 1 {
		t.Errorf("authorization server got %d client credentials requests; want 1", n)
	}
	st := h.token("o365")
	if st.State != oauth.StateValid || st.Interactive || st.HasRefreshToken || st.Requests != 1 || time.Until(st.Expiry) < 50*time.Minute {
		t.Errorf("GET /api/tokens/o365 = %+v; want valid for about an hour, one request", st)
	}
	// The API's refresh does the same.
	r2, body := h.postJSON("/api/tokens/o365/refresh", `{}`)
	var rr TokenRefreshResult
	if err := json.Unmarshal([]byte(body), &rr); err != nil || r2.StatusCode != http.StatusOK || !rr.Refreshed || rr.Token.Requests != 2 {
		t.Errorf("POST /api/tokens/o365/refresh = %s %s; want refreshed, two requests", r2.Status, body)
	}
	// The test page sends with the token.
	resp, body = h.postForm("/profiles/o365/test", "/profiles/o365/test", url.Values{
		"from": {"alarms@example.com"}, "to": {"ops@example.com"}, "subject": {"via XOAUTH2"}, "body": {"hello"},
	})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Test email sent") {
		t.Fatalf("test email through o365 = %s:\n%s", resp.Status, body)
	}
	m := h.Up.WaitMessages(t, 1, 5*time.Second)[0]
	if m.User != "alarms@example.com" || h.Up.Logins(oauth.XOAUTH2) != 1 {
		t.Errorf("upstream login %q with %d XOAUTH2 logins; want alarms@example.com once", m.User, h.Up.Logins(oauth.XOAUTH2))
	}
}

// TestRefreshShowsServerError: when the authorization server refuses the
// client, the page shows its own error text and the token is invalid.
func TestRefreshShowsServerError(t *testing.T) {
	h, as := startOAuth(t, testpeer.AuthOptions{})
	if err := as.SetTokenFailure(testpeer.AuthFailInvalid); err != nil {
		t.Fatal(err)
	}
	resp, body := h.postForm("/profiles/o365/token", "/profiles/o365/token/refresh", nil)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "invalid_client: Client authentication failed (test switch).") || !strings.Contains(body, `id="token-state">invalid<`) {
		t.Errorf("refresh with a refused client = %s; want 502, the server's error and state invalid:\n%s", resp.Status, body)
	}
	// A test email fails with the token error.
	resp, body = h.postForm("/profiles/o365/test", "/profiles/o365/test", url.Values{"from": {"alarms@example.com"}, "to": {"ops@example.com"}})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "invalid_client") {
		t.Errorf("test email without a token = %s; want 502 with the token error:\n%s", resp.Status, body)
	}
}

// browser follows redirects and keeps cookies, as a browser does.
func (h *harness) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// TestGrantNewToken: an interactive profile starts invalid with Grant New
// Token only; the grant goes through the consent page and the callback
// back to the Manage Token page, which shows the valid token and now
// offers Refresh Token, which works with the refresh token.
func TestGrantNewToken(t *testing.T) {
	h, as := startOAuth(t, testpeer.AuthOptions{})
	page := h.getOK("/profiles/gmail/token")
	if !strings.Contains(page, `id="token-state">invalid<`) || !strings.Contains(page, ">Grant New Token<") || strings.Contains(page, ">Refresh Token<") {
		t.Fatalf("token page of gmail before a grant:\n%s", page)
	}
	resp, _ := h.postForm("/profiles/gmail/token", "/profiles/gmail/token/grant", nil)
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(authURL, as.AuthURL+"?") {
		t.Fatalf("POST grant = %s → %q; want 303 to %s", resp.Status, authURL, as.AuthURL)
	}
	u, _ := url.Parse(authURL)
	if got := u.Query().Get("redirect_uri"); got != h.URL+"/oauth2/callback" {
		t.Errorf("redirect_uri = %q; want %s/oauth2/callback", got, h.URL)
	}
	if u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("state") == "" {
		t.Errorf("authorization URL %s lacks PKCE S256 or a state", authURL)
	}
	final, err := as.AuthConsent(context.Background(), h.browser(), authURL, true)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, final)
	if final.StatusCode != http.StatusOK || final.Request.URL.Path != "/profiles/gmail/token" || final.Request.URL.Query().Get("done") != "granted" {
		t.Fatalf("after consent: %s at %s; want the Manage Token page", final.Status, final.Request.URL)
	}
	for _, want := range []string{`id="token-state">valid<`, "The authorization server granted a new token.", `id="refresh-token">held<`, ">Refresh Token<", ">Grant New Token<"} {
		if !strings.Contains(body, want) {
			t.Errorf("token page after the grant lacks %q:\n%s", want, body)
		}
	}
	resp, _ = h.postForm("/profiles/gmail/token", "/profiles/gmail/token/refresh", nil)
	if resp.StatusCode != http.StatusSeeOther || as.TokenRequests("refresh_token") != 1 {
		t.Errorf("refresh after the grant = %s with %d refresh_token requests; want 303 and 1", resp.Status, as.TokenRequests("refresh_token"))
	}
	// The state is spent: replaying the redirect fails.
	replay := h.URL + "/oauth2/callback?" + final.Request.Response.Request.URL.RawQuery
	if r, err := h.browser().Get(replay); err != nil || r.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed callback = %v, %v; want 400", r.Status, err)
	}
}

// TestGrantDenied: when the user declines, the page says so with the
// authorization server's error.
func TestGrantDenied(t *testing.T) {
	h, as := startOAuth(t, testpeer.AuthOptions{})
	resp, _ := h.postForm("/profiles/gmail/token", "/profiles/gmail/token/grant", nil)
	final, err := as.AuthConsent(context.Background(), h.browser(), resp.Header.Get("Location"), false)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, final)
	if final.StatusCode != http.StatusBadRequest || !strings.Contains(body, "access_denied") || !strings.Contains(body, `id="token-state">invalid<`) {
		t.Errorf("after declining: %s:\n%s", final.Status, body)
	}
	if r, err := h.browser().Get(h.URL + "/oauth2/callback?state=forged&code=x"); err != nil || r.StatusCode != http.StatusBadRequest {
		t.Errorf("callback with an unknown state = %v, %v; want 400", r.Status, err)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}
