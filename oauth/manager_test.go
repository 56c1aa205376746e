package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// tokenForms returns the token requests of one grant type.
func tokenForms(as *testpeer.AuthServer, grantType string) []url.Values {
	var out []url.Values
	for _, f := range as.TokenRequestForms() {
		if f.Get("grant_type") == grantType {
			out = append(out, f)
		}
	}
	return out
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365", Scope: "https://outlook.office365.com/.default", CCParams: map[string]string{"resource": "smtp"}}))
	s := m.Source("o365")
	if s == nil {
		t.Fatal(`Source("o365") = nil`)
	}
	if st := s.Status(); st.State != oauth.StateAbsent || st.Interactive {
		t.Errorf("Status before any request = %+v; want absent, not interactive", st)
	}
	tok := token(t, s)
	e.remember(tok)
	info, err := e.as.Validate(context.Background(), tok)
	if err != nil {
		t.Fatalf("the server does not accept the token: %v", err)
	}
	if info.ClientID != "relay-test" || len(info.Scopes) != 1 || info.Scopes[0] != "https://outlook.office365.com/.default" {
		t.Errorf("token info = %+v; want client relay-test with the profile's scope", info)
	}
	// Cached: the second call makes no request.
	if tok2 := token(t, s); tok2 != tok {
		t.Error("second Token() returned another token")
	}
	if n := e.as.TokenRequests(""); n != 1 {
		t.Errorf("token requests = %d; want 1", n)
	}
	forms := e.as.TokenRequestForms()
	if len(forms) != 1 {
		t.Fatalf("forms = %v", forms)
	}
	f := forms[0]
	if f.Get("grant_type") != "client_credentials" || f.Get("scope") != "https://outlook.office365.com/.default" || f.Get("resource") != "smtp" {
		t.Errorf("client credentials request = %v; want grant_type, scope and the profile's resource parameter", f)
	}
	st := s.Status()
	if st.State != oauth.StateValid || st.Expiry.IsZero() || st.HasRefreshToken || st.Requests != 1 || st.Failures != 0 || st.LastRefresh.IsZero() {
		t.Errorf("Status = %+v; want valid with an expiry, one request", st)
	}
	if got := m.Statuses(); len(got) != 1 || got[0].Profile != "o365" {
		t.Errorf("Statuses = %+v", got)
	}
	if m.Source("nope") != nil {
		t.Error(`Source("nope") != nil`)
	}
	if _, err := m.StartGrant("o365"); err == nil {
		t.Error("StartGrant on a client credentials profile succeeded")
	}
}

func TestAuthorizationCodePKCE(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{RequireAuthParams: map[string]string{"access_type": "offline"}})
	m := e.manager(e.config(prof{
		Name: "gmail", Interactive: true, Scope: "https://mail.google.com/",
		AuthParams:    map[string]string{"access_type": "offline", "prompt": "consent"},
		CodeParams:    map[string]string{"code_extra": "c"},
		RefreshParams: map[string]string{"refresh_extra": "r"},
	}))
	s := m.Source("gmail")
	if st := s.Status(); st.State != oauth.StateInvalid {
		t.Errorf("interactive profile before a grant: State = %q; want invalid (the seed: 'invalid the first time')", st.State)
	}
	var te *oauth.TokenError
	if _, err := s.Token(context.Background()); !errors.As(err, &te) || !te.NeedsAction {
		t.Errorf("Token() before a grant = %v; want a TokenError that needs action", err)
	}
	if n := e.as.TokenRequests(""); n != 0 {
		t.Errorf("token requests before a grant = %d; want 0", n)
	}

	authURL, err := m.StartGrant("gmail")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"response_type": "code", "client_id": "relay-test", "redirect_uri": e.redirectURL(),
		"scope": "https://mail.google.com/", "code_challenge_method": "S256",
		"access_type": "offline", "prompt": "consent",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorization URL %s = %q; want %q", k, got, want)
		}
	}
	if len(q.Get("state")) < 32 || len(q.Get("code_challenge")) != 43 {
		t.Errorf("authorization URL state/code_challenge = %q/%q; want a random state and an S256 challenge", q.Get("state"), q.Get("code_challenge"))
	}
	for _, k := range []string{"code_extra", "refresh_extra"} {
		if q.Has(k) {
			t.Errorf("authorization URL carries %s, a token request parameter", k)
		}
	}

	resp, err := e.as.AuthConsent(context.Background(), browser(t), authURL, true)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Token granted") || !strings.Contains(body, "gmail") {
		t.Fatalf("callback page: %s\n%s", resp.Status, body)
	}
	st := s.Status()
	if st.State != oauth.StateValid || !st.HasRefreshToken || st.LastError != "" {
		t.Errorf("Status after the grant = %+v; want valid with a refresh token", st)
	}
	tok := token(t, s)
	e.remember(tok)
	info, err := e.as.Validate(context.Background(), tok)
	if err != nil || info.Subject != "user@example.com" {
		t.Errorf("Validate = %+v, %v; want the consenting user's token", info, err)
	}
	codeForms := tokenForms(e.as, "authorization_code")
	if len(codeForms) != 1 {
		t.Fatalf("authorization_code requests = %d; want 1", len(codeForms))
	}
	if f := codeForms[0]; f.Get("code_extra") != "c" || f.Get("code_verifier") == "" || f.Get("redirect_uri") != e.redirectURL() || f.Has("refresh_extra") || f.Has("access_type") {
		t.Errorf("code exchange form = %v; want the verifier, redirect_uri and only authorization_code_token_params", f)
	}

	// The redirect cannot be replayed: the state is spent.
	if _, err := m.CompleteGrant(context.Background(), q.Get("state"), "anything"); err == nil {
		t.Error("CompleteGrant with a used state succeeded")
	}
	if n := e.as.TokenRequests("authorization_code"); n != 1 {
		t.Errorf("authorization_code requests after a replay = %d; want 1", n)
	}

	// Refresh with rotation, and refresh_token_params only there.
	before := e.record("gmail")
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	after := e.record("gmail")
	if after.RefreshToken == "" || after.RefreshToken == before.RefreshToken || after.AccessToken == before.AccessToken {
		t.Error("after Refresh the file holds the same tokens; want the rotated ones")
	}
	rf := tokenForms(e.as, "refresh_token")
	if len(rf) != 1 || rf[0].Get("refresh_extra") != "r" || rf[0].Has("code_extra") || rf[0].Has("scope") {
		t.Errorf("refresh forms = %v; want one with only refresh_token_params", rf)
	}
}

func TestRotatedRefreshTokenOnDiskBeforeTokenReturns(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{AccessTokenLifespan: time.Hour})
	e.clock = newClock()
	m := e.manager(e.config(prof{Name: "gmail", Interactive: true}))
	e.grant(m, "gmail")
	s := m.Source("gmail")
	granted := e.record("gmail")

	e.clock.Add(2 * time.Hour) // the access token expired
	if st := s.Status(); st.State != oauth.StateExpired {
		t.Errorf("State = %q; want expired", st.State)
	}
	tok := token(t, s)
	// No pause: Token returned, so the rotated refresh token is on disk.
	rec := e.record("gmail")
	if rec.AccessToken != tok {
		t.Error("the file does not hold the access token Token() returned")
	}
	if rec.RefreshToken == "" || rec.RefreshToken == granted.RefreshToken {
		t.Fatal("the file does not hold the rotated refresh token")
	}
	if n := e.as.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("refresh requests = %d; want 1", n)
	}
	// The old refresh token is dead at the server: rotation happened.
	resp, err := http.PostForm(e.as.TokenURL, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {granted.RefreshToken},
		"client_id": {"relay-test"}, "client_secret": {"relay-secret"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_grant") {
		t.Errorf("reusing the old refresh token: %s %s; want 400 invalid_grant", resp.Status, body)
	}
}

func TestOneTokenRequestPerLifetime(t *testing.T) {
	const lifetime = 2 * time.Second
	e := newEnv(t, testpeer.AuthOptions{AccessTokenLifespan: lifetime})
	e.ahead = true
	// refresh_before_expiration 0: renew exactly at expiry (the seed's
	// meaning of <= 0), so one request per lifetime is the ideal.
	m := e.manager(e.config(prof{Name: "o365", RefreshBefore: "0s", Timeout: "10s"}))
	s := m.Source("o365")

	const callers = 50
	run := 6 * time.Second
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var calls int
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && time.Since(start) < run; i++ {
				_, err := s.Token(context.Background())
				mu.Lock()
				calls++
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(errs) > 0 {
		t.Fatalf("%d of %d Token() calls failed, first: %v", len(errs), calls, errs[0])
	}
	n := e.as.TokenRequests("client_credentials")
	lifetimes := int64(elapsed / lifetime)
	t.Logf("%d callers, %d calls over %v: %d token requests", callers, calls, elapsed.Round(time.Millisecond), n)
	if n < 1 || n > lifetimes+2 {
		t.Errorf("token requests = %d over %v of %v tokens; want at most %d (one per lifetime)", n, elapsed, lifetime, lifetimes+2)
	}
	if st := s.Status(); st.Requests != n {
		t.Errorf("Status.Requests = %d; server counted %d", st.Requests, n)
	}
}

func TestTokenEndpointDown(t *testing.T) {
	for _, failure := range []struct {
		name string
		f    testpeer.AuthFailure
	}{
		{"refused", testpeer.AuthFailRefuse},
		{"503", testpeer.AuthFail503},
		{"hang", testpeer.AuthFailHang},
	} {
		t.Run(failure.name, func(t *testing.T) {
			e := newEnv(t, testpeer.AuthOptions{})
			e.clock = newClock()
			const timeout = time.Second
			m := e.manager(e.config(prof{Name: "gmail", Interactive: true, Timeout: "1s"}))
			e.grant(m, "gmail")
			s := m.Source("gmail")
			rt := e.record("gmail").RefreshToken

			if err := e.as.SetTokenFailure(failure.f); err != nil {
				t.Fatal(err)
			}
			e.clock.Add(2 * time.Hour)
			start := time.Now()
			_, err := s.Token(context.Background())
			waited := time.Since(start)
			var te *oauth.TokenError
			if !errors.As(err, &te) || !te.Temporary || te.NeedsAction {
				t.Fatalf("Token() with the endpoint down = %v; want a temporary TokenError", err)
			}
			if waited > timeout+5*time.Second {
				t.Errorf("Token() waited %v; access_token_timeout is %v", waited, timeout)
			}
			st := s.Status()
			if !st.HasRefreshToken || st.State == oauth.StateInvalid {
				t.Errorf("Status = %+v; want the refresh token kept and no action needed", st)
			}
			if failure.f != testpeer.AuthFailHang && (st.LastError == "" || st.Failures == 0) {
				t.Errorf("Status = %+v; want the failure recorded", st)
			}
			if e.record("gmail").RefreshToken != rt {
				t.Error("the persisted refresh token changed during the outage")
			}
			if err := e.as.SetTokenFailure(testpeer.AuthFailNone); err != nil {
				t.Fatal(err)
			}
			if err := s.Refresh(context.Background()); err != nil {
				t.Fatalf("Refresh() after the outage = %v", err)
			}
			if st := s.Status(); st.State != oauth.StateValid || st.LastError != "" {
				t.Errorf("Status after recovery = %+v; want valid without error", st)
			}
		})
	}
}

func TestInvalidGrant(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	e.clock = newClock()
	m := e.manager(e.config(prof{Name: "gmail", Interactive: true}))
	e.grant(m, "gmail")
	s := m.Source("gmail")

	e.as.RevokeRefreshTokens()
	e.clock.Add(2 * time.Hour)
	_, err := s.Token(context.Background())
	var te *oauth.TokenError
	if !errors.As(err, &te) || !te.NeedsAction || te.Temporary || te.Code != "invalid_grant" || te.Description == "" {
		t.Fatalf("Token() with a revoked refresh token = %#v; want invalid_grant needing action with the server's description", err)
	}
	st := s.Status()
	if st.State != oauth.StateInvalid || st.HasRefreshToken || !strings.HasPrefix(st.LastError, "invalid_grant: ") || st.LastErrorAt.IsZero() {
		t.Errorf("Status = %+v; want invalid, refresh token dropped, the server's error kept", st)
	}
	if !strings.Contains(st.LastError, te.Description) {
		t.Errorf("LastError %q lacks the server's description %q", st.LastError, te.Description)
	}
	rec := e.record("gmail")
	if rec.RefreshToken != "" || !strings.HasPrefix(rec.LastError, "invalid_grant") {
		t.Errorf("persisted record keeps refresh token %t, last error %q; want it dropped and the error kept", rec.RefreshToken != "", rec.LastError)
	}
	// No more requests until someone acts.
	n := e.as.TokenRequests("")
	if _, err := s.Token(context.Background()); !errors.As(err, &te) || te.Code != "invalid_grant" {
		t.Errorf("second Token() = %v; want the same invalid_grant", err)
	}
	if s.Refresh(context.Background()) == nil {
		t.Error("Refresh() without a refresh token succeeded")
	}
	if got := e.as.TokenRequests(""); got != n {
		t.Errorf("token requests grew from %d to %d without a refresh token", n, got)
	}
	// A new grant fixes it.
	e.grant(m, "gmail")
	if st := s.Status(); st.State != oauth.StateValid || st.LastError != "" || !st.HasRefreshToken {
		t.Errorf("Status after a new grant = %+v; want valid", st)
	}
}

func TestInvalidClientNeedsAction(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365"}))
	s := m.Source("o365")
	e.as.SetTokenFailure(testpeer.AuthFailInvalid)
	_, err := s.Token(context.Background())
	var te *oauth.TokenError
	if !errors.As(err, &te) || !te.NeedsAction || te.Code != "invalid_client" || te.HTTPStatus != http.StatusUnauthorized {
		t.Fatalf("Token() = %v; want invalid_client needing action", err)
	}
	st := s.Status()
	if st.State != oauth.StateInvalid || st.LastError != "invalid_client: Client authentication failed (test switch)." {
		t.Errorf("Status = %+v", st)
	}
	n := e.as.TokenRequests("")
	if _, err := s.Token(context.Background()); err == nil {
		t.Error("second Token() succeeded")
	}
	if got := e.as.TokenRequests(""); got != n {
		t.Errorf("Token() in the invalid state asked the server again (%d → %d requests)", n, got)
	}
	// The operator fixed it at the provider and presses Refresh.
	e.as.SetTokenFailure(testpeer.AuthFailNone)
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	if st := s.Status(); st.State != oauth.StateValid {
		t.Errorf("State after Refresh = %q; want valid", st.State)
	}
}

func TestRestartReusesPersistedToken(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	cfg := e.config(prof{Name: "o365"}, prof{Name: "gmail", Interactive: true})
	m := e.manager(cfg)
	tok := token(t, m.Source("o365"))
	e.grant(m, "gmail")
	gtok := token(t, m.Source("gmail"))
	e.remember(tok)
	e.remember(gtok)
	n := e.as.TokenRequests("")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2 := e.manager(cfg)
	for _, st := range m2.Statuses() {
		if st.State != oauth.StateValid {
			t.Errorf("after restart %s is %q; want valid", st.Profile, st.State)
		}
	}
	if got := token(t, m2.Source("o365")); got != tok {
		t.Error("after restart the client credentials profile has another token")
	}
	if got := token(t, m2.Source("gmail")); got != gtok {
		t.Error("after restart the interactive profile has another token")
	}
	if got := e.as.TokenRequests(""); got != n {
		t.Errorf("token requests grew from %d to %d after a restart", n, got)
	}
	// The refresh token survives too: a refresh needs no new grant.
	if err := m2.Source("gmail").Refresh(context.Background()); err != nil {
		t.Errorf("Refresh() after restart = %v", err)
	}
}

func TestTokenFileModes(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365"}))
	token(t, m.Source("o365"))
	dir := filepath.Join(e.dir, "tokens")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("tokens directory mode = %v; want 0700", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "o365.json" {
		t.Errorf("tokens directory holds %v; want only o365.json (no temporary files)", entries)
	}
	fi, err = os.Stat(filepath.Join(dir, "o365.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v; want 0600", fi.Mode().Perm())
	}
}

func TestInvalidateFetchesOneNewToken(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365"}))
	s := m.Source("o365")
	old := token(t, s)
	s.Invalidate(old)
	if st := s.Status(); st.State != oauth.StateAbsent {
		t.Errorf("State after Invalidate = %q; want absent", st.State)
	}
	var wg sync.WaitGroup
	toks := make([]string, 20)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], _ = s.Token(context.Background())
		}()
	}
	wg.Wait()
	for _, tok := range toks {
		if tok == "" || tok == old || tok != toks[0] {
			t.Fatalf("after Invalidate callers got %q; want one new token for all", toks)
		}
	}
	if n := e.as.TokenRequests(""); n != 2 {
		t.Errorf("token requests = %d; want 2 (one before, one after Invalidate)", n)
	}
	// A stale token does not drop the new one.
	s.Invalidate(old)
	token(t, s)
	if n := e.as.TokenRequests(""); n != 2 {
		t.Errorf("Invalidate of a stale token caused a request (%d)", n)
	}
	if e.record("o365").AccessToken != toks[0] {
		t.Error("the file does not hold the new token")
	}
}

func TestInvalidateKeepsRefreshToken(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "gmail", Interactive: true}))
	e.grant(m, "gmail")
	s := m.Source("gmail")
	old := token(t, s)
	s.Invalidate(old)
	if st := s.Status(); !st.HasRefreshToken || st.State == oauth.StateInvalid {
		t.Errorf("Status after Invalidate = %+v; want the refresh token kept", st)
	}
	if rec := e.record("gmail"); rec.AccessToken != "" || rec.RefreshToken == "" {
		t.Error("the file should hold the refresh token and no access token")
	}
	if tok := token(t, s); tok == old {
		t.Error("Token() after Invalidate returned the refused token")
	}
	if n := e.as.TokenRequests("refresh_token"); n != 1 {
		t.Errorf("refresh requests = %d; want 1", n)
	}
}

func TestFailFast(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365", Timeout: "0s"}))
	s := m.Source("o365")
	changed := s.Changed()
	_, err := s.Token(context.Background())
	var te *oauth.TokenError
	if !errors.As(err, &te) || !te.Temporary {
		t.Fatalf("Token() without a token and access_token_timeout 0 = %v; want a temporary TokenError at once", err)
	}
	// It started the request in the background; the next call has a token.
	for i := 0; i < 100 && s.Status().State != oauth.StateValid; i++ {
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
		changed = s.Changed()
	}
	token(t, s)
	if n := e.as.TokenRequests(""); n != 1 {
		t.Errorf("token requests = %d; want 1", n)
	}
}

func TestRefreshAheadKeepsServingTheOldToken(t *testing.T) {
	// The server's tokens live an hour; the profile renews five minutes
	// ahead. Inside the window a caller gets the old, valid token at once
	// while the renewal runs.
	e := newEnv(t, testpeer.AuthOptions{AccessTokenLifespan: time.Hour})
	e.clock = newClock()
	m := e.manager(e.config(prof{Name: "o365", RefreshBefore: "5m"}))
	s := m.Source("o365")
	first := token(t, s)
	exp := s.Status().Expiry
	if d := exp.Sub(e.clock.Now()); d != time.Hour {
		t.Errorf("expiry is %v ahead by the injected clock; want 1h (expires_in)", d)
	}
	e.clock.Add(54 * time.Minute)
	if tok := token(t, s); tok != first {
		t.Error("before the window Token() returned a new token")
	}
	e.clock.Add(2 * time.Minute) // 4 minutes left: in the window
	changed := s.Changed()
	if tok := token(t, s); tok != first {
		t.Error("in the window Token() did not return the still valid token at once")
	}
	for i := 0; i < 100 && e.as.TokenRequests("") < 2; i++ {
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
		changed = s.Changed()
	}
	for i := 0; i < 100 && s.Status().Expiry.Equal(exp); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if tok := token(t, s); tok == first {
		t.Error("after the renewal Token() still returns the old token")
	}
	if n := e.as.TokenRequests(""); n != 2 {
		t.Errorf("token requests = %d; want 2", n)
	}
}

func TestApply(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "a"}, prof{Name: "b"}))
	ta, tb := token(t, m.Source("a")), token(t, m.Source("b"))
	oldB := m.Source("b")

	// a: only the timeout changes, the token stays; b: removed; c: new.
	if err := m.Apply(e.config(prof{Name: "a", Timeout: "30s"}, prof{Name: "c"})); err != nil {
		t.Fatal(err)
	}
	if got := token(t, m.Source("a")); got != ta {
		t.Error("a changed only its timeout but lost its token")
	}
	if m.Source("b") != nil {
		t.Error("removed profile b still has a source")
	}
	if _, err := oldB.Token(context.Background()); !errors.Is(err, oauth.ErrClosed) {
		t.Errorf("Token() of a removed profile = %v; want ErrClosed", err)
	}
	if m.Source("c") == nil || m.Source("c").Status().State != oauth.StateAbsent {
		t.Error("new profile c has no fresh source")
	}
	_ = tb

	// a: the scope changes, so the old token is not used.
	if err := m.Apply(e.config(prof{Name: "a", Scope: "offline_access"})); err != nil {
		t.Fatal(err)
	}
	if st := m.Source("a").Status(); st.State != oauth.StateAbsent {
		t.Errorf("after a scope change a is %q; want absent", st.State)
	}
	if got := token(t, m.Source("a")); got == ta {
		t.Error("after a scope change a still uses the old token")
	}
}

func TestConcurrentCompleteGrantRedeemsOnce(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "gmail", Interactive: true}))
	authURL, err := m.StartGrant("gmail")
	if err != nil {
		t.Fatal(err)
	}
	// Stop at the redirect to relay, as if two browser tabs delivered it.
	client := browser(t)
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), e.redirectURL()) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := e.as.AuthConsent(context.Background(), client, authURL, true)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("redirect = %s %q; want a Location with a code", resp.Status, resp.Header.Get("Location"))
	}
	state, code := loc.Query().Get("state"), loc.Query().Get("code")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.CompleteGrant(context.Background(), state, code)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d CompleteGrant calls succeeded: %v; want exactly 1", ok, len(errs), errs)
	}
	if n := e.as.TokenRequests("authorization_code"); n != 1 {
		t.Errorf("the code was sent %d times; want once", n)
	}
}

func TestCallbackErrors(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "gmail", Interactive: true}))
	c := browser(t)

	resp, err := c.Get(e.redirectURL() + "?state=forged&code=x")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Grant failed") {
		t.Errorf("forged state: %s\n%s", resp.Status, body)
	}
	if n := e.as.TokenRequests(""); n != 0 {
		t.Errorf("a forged state caused %d token requests", n)
	}

	// The user declines on the consent page.
	authURL, err := m.StartGrant("gmail")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = e.as.AuthConsent(context.Background(), c, authURL, false)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "access_denied") {
		t.Errorf("declined consent: %s\n%s", resp.Status, body)
	}
	if st := m.Source("gmail").Status(); !strings.HasPrefix(st.LastError, "access_denied") || st.State != oauth.StateInvalid {
		t.Errorf("Status after a declined consent = %+v; want invalid with access_denied", st)
	}
}

func TestReservedParametersAreNotOverridden(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m := e.manager(e.config(prof{Name: "o365", CCParams: map[string]string{"grant_type": "password", "scope": "other", "resource": "r"}}))
	token(t, m.Source("o365"))
	f := e.as.TokenRequestForms()[0]
	if f.Get("grant_type") != "client_credentials" || f.Get("scope") != "mail" || f.Get("resource") != "r" {
		t.Errorf("form = %v; want the flow's grant_type and scope, and the extra resource", f)
	}
	logs := e.logs.String()
	for _, k := range []string{"client_credentials_token_params.grant_type", "client_credentials_token_params.scope"} {
		if !strings.Contains(logs, k) {
			t.Errorf("no warning about %s", k)
		}
	}
}

func TestBackgroundRefreshAhead(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{AccessTokenLifespan: 2 * time.Second})
	cfg := e.config(prof{Name: "gmail", Interactive: true, RefreshBefore: "1s"})
	m := e.manager(cfg)
	e.grant(m, "gmail")
	m.Close()

	// Without RefreshAhead (`relay token status`) a Manager sends nothing,
	// even once the token is due.
	time.Sleep(2500 * time.Millisecond)
	m2 := e.manager(cfg)
	if st := m2.Source("gmail").Status(); st.State != oauth.StateExpired || !st.HasRefreshToken {
		t.Errorf("Status = %+v; want expired with a refresh token", st)
	}
	m2.Close()
	if n := e.as.TokenRequests("refresh_token"); n != 0 {
		t.Errorf("a Manager without RefreshAhead sent %d refresh requests", n)
	}

	// With it, the server renews without any caller.
	e.ahead = true
	m3 := e.manager(cfg)
	s := m3.Source("gmail")
	for i := 0; i < 50 && e.as.TokenRequests("refresh_token") < 2; i++ {
		select {
		case <-s.Changed():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if n := e.as.TokenRequests("refresh_token"); n < 2 {
		t.Errorf("background refreshes = %d; want the expired token renewed, then renewed again ahead of expiry", n)
	}
	if st := s.Status(); st.Requests == 0 || st.Failures != 0 {
		t.Errorf("Status = %+v", st)
	}
}
