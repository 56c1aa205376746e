package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Interactive grants in progress are remembered in memory only: a grant
// outlives neither a restart nor grantLifetime, and at most maxPending wait
// at once (the oldest is forgotten first), so that nobody can fill memory
// by opening grants.
const (
	grantLifetime = 10 * time.Minute
	maxPending    = 64
)

type pendingGrant struct {
	profile     string
	verifier    string // PKCE code_verifier (RFC 7636 §4.1)
	fingerprint string // the settings the grant was started for
	created     time.Time
}

// GrantError is why an authorization-code redirect was not accepted:
// an unknown, used or expired state, a missing code, or a changed profile.
// Failures of the code exchange itself are *TokenError.
type GrantError struct {
	Profile string // "" when the state names no grant
	Msg     string
}

func (e *GrantError) Error() string {
	if e.Profile == "" {
		return "authorization grant: " + e.Msg
	}
	return fmt.Sprintf("authorization grant for profile %q: %s", e.Profile, e.Msg)
}

// StartGrant begins the authorization code grant for an interactive
// profile (RFC 6749 §4.1 with PKCE S256, RFC 7636) and returns the URL to
// open in a browser. The state and verifier stay in memory until the
// redirect reaches CompleteGrant, for at most ten minutes.
func (m *Manager) StartGrant(profile string) (string, error) {
	s := m.Source(profile)
	if s == nil {
		return "", &GrantError{Profile: profile, Msg: "not an OAuth2 profile"}
	}
	s.mu.Lock()
	set, conf := s.set, s.codeConf
	s.mu.Unlock()
	if !set.interactive {
		return "", &GrantError{Profile: profile, Msg: "the profile uses client credentials (interactive = false) and needs no grant; refresh its token instead"}
	}
	if set.authURL == "" || set.redirectURL == "" {
		return "", &GrantError{Profile: profile, Msg: "the OAuth2 client needs auth_url and a redirect URL (redirect_url, or admin.listen)"}
	}
	state := randomString()
	verifier := oauth2.GenerateVerifier()
	opts := make([]oauth2.AuthCodeOption, 0, len(set.authParams)+1)
	for k, v := range set.authParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v[0]))
	}
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	authURL := conf.AuthCodeURL(state, opts...)

	now := time.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return "", ErrClosed
	}
	m.pruneLocked(now)
	if len(m.pending) >= maxPending {
		var oldest string
		for k, g := range m.pending {
			if oldest == "" || g.created.Before(m.pending[oldest].created) {
				oldest = k
			}
		}
		delete(m.pending, oldest)
	}
	m.pending[state] = &pendingGrant{profile: profile, verifier: verifier, fingerprint: set.fingerprint, created: now}
	m.mu.Unlock()
	s.log.Info("authorization grant started", "grant_type", "authorization_code")
	return authURL, nil
}

func (m *Manager) pruneLocked(now time.Time) {
	for k, g := range m.pending {
		if now.Sub(g.created) > grantLifetime {
			delete(m.pending, k)
		}
	}
}

// takeGrant removes and returns the grant of state: whoever takes it is the
// only one to redeem its code.
func (m *Manager) takeGrant(state string) *pendingGrant {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(time.Now())
	g := m.pending[state]
	delete(m.pending, state)
	return g
}

// CompleteGrant finishes the grant that state names: it redeems code
// (with the PKCE verifier and authorization_code_token_params) exactly
// once, stores the tokens and returns the profile. A second call with the
// same state fails without a request.
func (m *Manager) CompleteGrant(ctx context.Context, state, code string) (string, error) {
	if state == "" {
		return "", &GrantError{Msg: "the redirect carries no state"}
	}
	g := m.takeGrant(state)
	if g == nil {
		return "", &GrantError{Msg: "unknown, used or expired state; start the grant again"}
	}
	if code == "" {
		return g.profile, &GrantError{Profile: g.profile, Msg: "the redirect carries no authorization code"}
	}
	s := m.Source(g.profile)
	if s == nil {
		return g.profile, &GrantError{Profile: g.profile, Msg: "the profile was removed during the grant"}
	}
	return g.profile, s.exchange(ctx, g, code)
}

// exchange redeems an authorization code (RFC 6749 §4.1.3).
func (s *TokenSource) exchange(ctx context.Context, g *pendingGrant, code string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	release, te := s.acquire(ctx)
	if te != nil {
		return te
	}
	defer release()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &TokenError{Profile: s.name, Temporary: true, Err: ErrClosed}
	}
	set, conf, gen := s.set, s.codeConf, s.gen
	if !set.interactive || set.fingerprint != g.fingerprint {
		s.mu.Unlock()
		return &GrantError{Profile: s.name, Msg: "the profile's settings changed during the grant; start it again"}
	}
	s.requests++
	s.mu.Unlock()

	cred, err := set.credentialParams()
	if err != nil {
		return &TokenError{Profile: s.name, Description: "cannot sign the client assertion", Err: err}
	}
	opts := authOptions(set.codeParams)
	opts = append(opts, authOptions(cred)...)
	opts = append(opts, oauth2.VerifierOption(g.verifier))
	// Stop with the Manager as well as with the caller.
	stop := context.AfterFunc(s.m.ctx, cancel)
	defer stop()
	ot, err := conf.Exchange(s.m.withHTTP(ctx), code, opts...)
	if err != nil {
		te := classify(s.name, err)
		s.grantFailed(te, "authorization_code")
		return te
	}
	if ot.RefreshToken == "" {
		s.log.Warn("the authorization server issued no refresh token; the access token cannot be renewed without a new grant (Google: authorization_request_params access_type = \"offline\" and prompt = \"consent\"; Microsoft: add offline_access to scope)")
	}
	f := &flight{done: make(chan struct{})} // private: nobody waits on it
	if err := s.obtained(f, gen, "authorization_code", ot); err != nil {
		return err
	}
	return nil
}

// acquire waits for the source's one request slot (sem), for at most
// ctx, and returns its release.
func (s *TokenSource) acquire(ctx context.Context) (func(), *TokenError) {
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	case <-ctx.Done():
		return nil, &TokenError{Profile: s.name, Temporary: true, Err: ctx.Err()}
	case <-s.m.ctx.Done():
		return nil, &TokenError{Profile: s.name, Temporary: true, Err: ErrClosed}
	}
}

// grantFailed records a failed grant of grant type grant. It marks nothing
// as needing action: a refresh token the profile already has still works.
func (s *TokenSource) grantFailed(te *TokenError, grant string) {
	s.mu.Lock()
	s.failures++
	s.lastErr, s.lastErrText, s.lastErrAt = te, te.Reason(), s.m.now()
	s.broadcastLocked()
	s.mu.Unlock()
	s.log.Error("authorization grant failed", append([]any{"grant_type", grant}, te.logAttrs()...)...)
	s.persist()
}

// DenyGrant ends the grant of state after the authorization server
// redirected with an error (RFC 6749 §4.1.2.1), such as access_denied
// when the user declined, and records it for the profile. It returns the
// profile, or "" for an unknown state.
func (m *Manager) DenyGrant(state, code, description string) string {
	g := m.takeGrant(state)
	if g == nil {
		return ""
	}
	s := m.Source(g.profile)
	if s == nil {
		return g.profile
	}
	s.grantFailed(&TokenError{Profile: g.profile, NeedsAction: true, Code: clean(code, 100), Description: clean(description, 500)}, "authorization_code")
	return g.profile
}

func randomString() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
