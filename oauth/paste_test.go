package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// consentRedirect consents in a browser that does not follow the last
// redirect, as when the redirect URI is unreachable from that browser, and
// returns the address it ended on.
func consentRedirect(t *testing.T, e *env, authURL string, approve bool) string {
	t.Helper()
	c := browser(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := e.as.AuthConsent(context.Background(), c, authURL, approve)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, e.redirectURL()) {
		t.Fatalf("consent ended at %s %q; want a redirect to %s", resp.Status, loc, e.redirectURL())
	}
	return loc
}

// TestPastedRedirect: the address a browser elsewhere ended on, pasted,
// completes the grant with state and PKCE checked; a wrong state, another
// profile's address and a declined consent are refused without tokens.
func TestPastedRedirect(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "a", Interactive: true}, prof{Name: "b", Interactive: true}))
	authURL, err := m.StartGrant("a")
	if err != nil {
		t.Fatal(err)
	}
	loc := consentRedirect(t, e, authURL, true)

	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("state", "forged-"+q.Get("state"))
	u.RawQuery = q.Encode()
	err = m.CompleteRedirect(context.Background(), "a", u.String())
	var ge *oauth.GrantError
	if !errors.As(err, &ge) || !strings.Contains(ge.Msg, "state") {
		t.Fatalf("CompleteRedirect(wrong state) = %v; want a GrantError about the state", err)
	}
	if err := m.CompleteRedirect(context.Background(), "b", loc); err == nil || !strings.Contains(err.Error(), "profile a") {
		t.Fatalf("CompleteRedirect(b, address of a) = %v; want a refusal naming profile a", err)
	}
	if n := e.as.TokenRequests("authorization_code"); n != 0 {
		t.Fatalf("%d code exchanges after refused pastes; want 0", n)
	}
	// The whole address, with spaces a terminal may add around it.
	if err := m.CompleteRedirect(context.Background(), "a", "  "+loc+"\n"); err != nil {
		t.Fatalf("CompleteRedirect(a, address) = %v", err)
	}
	if st := m.Source("a").Status(); st.State != oauth.StateValid || !st.HasRefreshToken {
		t.Fatalf("status after the pasted redirect %+v; want a valid token and a refresh token", st)
	}
	forms := e.as.TokenRequestForms()
	if last := forms[len(forms)-1]; last.Get("code_verifier") == "" {
		t.Errorf("code exchange without code_verifier: %v", last)
	}
	if err := m.CompleteRedirect(context.Background(), "a", loc); err == nil {
		t.Fatal("CompleteRedirect of a used address succeeded; want a refusal")
	}

	// Declined: the address carries error=access_denied.
	authURL, _ = m.StartGrant("b")
	denied := consentRedirect(t, e, authURL, false)
	err = m.CompleteRedirect(context.Background(), "b", denied)
	var te *oauth.TokenError
	if !errors.As(err, &te) || te.Code != "access_denied" {
		t.Fatalf("CompleteRedirect(declined) = %v; want access_denied", err)
	}
	if st := m.Source("b").Status(); !strings.Contains(st.LastError, "access_denied") {
		t.Errorf("status %+v; want access_denied as last error", st)
	}
	// Only the query, as some people copy it.
	authURL, _ = m.StartGrant("b")
	loc = consentRedirect(t, e, authURL, true)
	if err := m.CompleteRedirect(context.Background(), "b", loc[strings.Index(loc, "?")+1:]); err != nil {
		t.Fatalf("CompleteRedirect(b, query only) = %v", err)
	}
}
