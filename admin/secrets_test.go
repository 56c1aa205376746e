package admin

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// everyAnswer fetches every page and API answer of h, GET and POST, and
// returns them by name.
func everyAnswer(t *testing.T, h *harness, profiles []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	get := func(path string) {
		resp, body := h.get(path)
		out["GET "+path] = resp.Header.Get("Set-Cookie") + "\n" + body
	}
	for _, p := range []string{"/", "/queue", "/api/profiles", "/api/tokens", "/api/queue", "/metrics", "/healthz", "/oauth2/callback?state=x&code=y", "/nosuch", "/api/nosuch"} {
		get(p)
	}
	for _, name := range profiles {
		for _, p := range []string{"/profiles/" + name + "/token", "/profiles/" + name + "/test", "/api/profiles/" + name, "/api/tokens/" + name} {
			get(p)
		}
		resp, body := h.postForm("/profiles/"+name+"/test", "/profiles/"+name+"/test", url.Values{"from": {"alarms@plant.example.com"}, "to": {"ops@example.com"}, "subject": {"s"}, "body": {"b"}})
		out["POST test "+name] = resp.Status + body
		resp, body = h.postJSON("/api/profiles/"+name+"/test", `{"to":"ops@example.com"}`)
		out["POST /api test "+name] = resp.Status + body
		resp, body = h.postJSON("/api/tokens/"+name+"/refresh", `{}`)
		out["POST /api refresh "+name] = resp.Status + body
	}
	return out
}

func assertNoSecrets(t *testing.T, answers map[string]string, secrets ...string) {
	t.Helper()
	for name, body := range answers {
		for _, s := range secrets {
			if s != "" && strings.Contains(body, s) {
				t.Errorf("%s shows the secret %q:\n%s", name, s, body)
			}
		}
	}
}

// TestNoSecretOnAnyPage renders every page and API answer, with a profile
// whose upstream login failed and one that works, and searches them for the
// upstream password and the admin password and its hash.
func TestNoSecretOnAnyPage(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// The upstream knows another password: every login fails, and its
	// error shows on the pages.
	h := startHarness(t, harnessOptions{
		passwordHash: string(hash),
		upstream:     testpeer.UpstreamOptions{Users: map[string]string{"alarms@plant.example.com": "another"}},
	})
	h.password = adminPassword
	h.sendSMTP("alarms@plant.example.com", "ops@example.com", "Subject: x\n\nx")
	testpeer.WaitFor(t, "a failed login", 10*time.Second, func() bool { return h.Relay.Stats("mailhost").LastError != "" })
	answers := everyAnswer(t, h, []string{"mailhost", "local"})
	if !strings.Contains(answers["GET /"], "AUTH") {
		t.Errorf("the index does not show the login failure:\n%s", answers["GET /"])
	}
	if resp, _ := h.get("/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %s", resp.Status)
	}
	assertNoSecrets(t, answers, upstreamPassword, adminPassword, string(hash))
}

// TestNoTokenOnAnyPage: with OAuth2 profiles holding access and refresh
// tokens (a client credentials refresh and a full grant), no page or API
// answer shows a token, the client secret or the upstream password.
func TestNoTokenOnAnyPage(t *testing.T) {
	h, as := startOAuth(t, testpeer.AuthOptions{})
	if resp, body := h.postJSON("/api/tokens/o365/refresh", `{}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh o365 = %s %s", resp.Status, body)
	}
	resp, _ := h.postForm("/profiles/gmail/token", "/profiles/gmail/token/grant", nil)
	if _, err := as.AuthConsent(context.Background(), h.browser(), resp.Header.Get("Location"), true); err != nil {
		t.Fatal(err)
	}
	store := oauth.NewFileStore(filepath.Join(h.DataDir, "tokens"))
	var secrets []string
	for _, p := range []string{"o365", "gmail"} {
		rec, err := store.Load(context.Background(), p)
		if err != nil || rec == nil || rec.AccessToken == "" {
			t.Fatalf("stored tokens of %s = %+v, %v; want an access token", p, rec, err)
		}
		secrets = append(secrets, rec.AccessToken, rec.RefreshToken)
	}
	if secrets[3] == "" {
		t.Fatalf("the grant gave no refresh token")
	}
	answers := everyAnswer(t, h, []string{"mailhost", "local", "o365", "gmail"})
	if !strings.Contains(answers["GET /profiles/gmail/token"], `id="token-state">valid<`) {
		t.Errorf("gmail's token page does not show the valid token:\n%s", answers["GET /profiles/gmail/token"])
	}
	assertNoSecrets(t, answers, append(secrets, clientSecret, upstreamPassword)...)
}
