package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/relaymail/relay/oauth"
)

// grantTokens is a token manager with one pending grant, state "good" for
// profile gmail; it records what the callback asked of it.
type grantTokens struct {
	fakeTokens
	mu        sync.Mutex
	completed int
	denied    []string
}

func (g *grantTokens) CompleteGrant(_ context.Context, state, code string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.completed++
	if state != "good" || code == "" {
		return "", &oauth.GrantError{Msg: "unknown, used or expired state; start the grant again"}
	}
	return "gmail", nil
}

func (g *grantTokens) DenyGrant(state, code, description string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.denied = append(g.denied, code+": "+description)
	return "gmail"
}

// TestGrantCallback: the redirect URI `relay token grant` serves when no
// relay runs is the admin listener's, with a page of its own that links
// nowhere, and the same headers.
func TestGrantCallback(t *testing.T) {
	tk := &grantTokens{fakeTokens: fakeTokens{statuses: []oauth.Status{{Profile: "gmail", Interactive: true, HasRefreshToken: true, State: oauth.StateValid}}}}
	srv := httptest.NewServer(GrantCallback(tk, nil))
	defer srv.Close()
	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	resp, body := get(http.MethodHead, "/oauth2/callback?state=good&code=c")
	if resp.StatusCode != http.StatusMethodNotAllowed || tk.completed != 0 {
		t.Errorf("HEAD = %s with %d grants completed; want 405 and none (a HEAD must not spend the state)", resp.Status, tk.completed)
	}
	resp, body = get(http.MethodGet, "/oauth2/callback?state=good&code=c")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Token granted") || !strings.Contains(body, "Profile gmail has a new access token and refresh token") {
		t.Errorf("granted: %s\n%s", resp.Status, body)
	}
	if strings.Contains(body, `href="/`) && !strings.Contains(body, `href="/static/admin.css"`) || strings.Contains(body, `href="/queue"`) {
		t.Errorf("the page links to pages that do not run:\n%s", body)
	}
	if h := resp.Header; h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers %v; want no Referer, no caching and the pages' policy", h)
	}
	resp, body = get(http.MethodGet, "/oauth2/callback?state=forged&code=x")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Grant failed") || !strings.Contains(body, "unknown, used or expired state") {
		t.Errorf("forged state: %s\n%s", resp.Status, body)
	}
	resp, body = get(http.MethodGet, "/oauth2/callback?state=good&error=access_denied&error_description=The+user+declined")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "access_denied: The user declined") || len(tk.denied) != 1 {
		t.Errorf("declined: %s, %d denials recorded\n%s", resp.Status, len(tk.denied), body)
	}
	if resp, _ := get(http.MethodGet, "/static/admin.css"); resp.StatusCode != http.StatusOK {
		t.Errorf("stylesheet: %s", resp.Status)
	}
}
