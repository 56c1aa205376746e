// Package testpeer holds real peers for relay's tests, run in process on
// loopback: an OAuth 2.0 authorization server (authserver.go), the server
// side of XOAUTH2 for go-smtp test upstreams (xoauth2server.go) and SMTP
// upstreams.
package testpeer

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/crypto/bcrypt"
)

// AuthOptions configure a test authorization server. The zero value is a
// server with one confidential client, "relay-test" / "relay-secret".
type AuthOptions struct {
	ClientID     string   // default "relay-test"
	ClientSecret string   // default "relay-secret"
	RedirectURIs []string // registered redirect URIs, matched exactly (loopback: any port)
	// Scopes the client may request; default: "mail", "offline_access",
	// "https://mail.google.com/" and "https://outlook.office365.com/.default".
	Scopes []string
	// AccessTokenLifespan is the lifetime of access tokens, sent as
	// expires_in in whole seconds; default one hour.
	AccessTokenLifespan time.Duration
	// Subject is the resource owner who approves the consent page;
	// default "user@example.com".
	Subject string
	// RequireAuthParams are parameters the authorization request must
	// carry (as Google wants access_type=offline for a refresh token);
	// without them the server redirects back with invalid_request.
	RequireAuthParams map[string]string
	// RefreshTokenScopes, if set, limits refresh tokens to grants of one
	// of these scopes (as Microsoft does with offline_access); by default
	// every code exchange returns a refresh token.
	RefreshTokenScopes []string
	// CertificateClients are clients that authenticate with a client
	// assertion (RFC 7523 §2.2, private_key_jwt) signed by the key of
	// their certificate; ServiceAccounts may use the JWT bearer grant
	// (RFC 7523 §2.1). See authserver_jwt.go.
	CertificateClients []CertificateClient
	ServiceAccounts    []ServiceAccount
}

// AuthFailure selects how the token endpoint fails.
type AuthFailure int

const (
	AuthFailNone    AuthFailure = iota // answer normally
	AuthFail503                        // 503 Service Unavailable, with a plain-text body
	AuthFailRefuse                     // nothing listens: connection refused
	AuthFailHang                       // hold requests until the mode changes or the client gives up
	AuthFailInvalid                    // 401 invalid_client, as when the secret was rotated
)

// AuthServer is an OAuth 2.0 authorization server for tests, built on
// ory/fosite with its in-memory store: client credentials, authorization
// code with PKCE (enforced, S256 only) behind a consent page, refresh
// tokens with rotation, introspection and revocation. Its token endpoint
// listens on its own port (as Google's does on its own host), so that it
// can refuse connections while the rest stays up.
type AuthServer struct {
	URL           string // the main listener: http://127.0.0.1:PORT
	AuthURL       string // authorization endpoint
	TokenURL      string // token endpoint, on its own listener
	IntrospectURL string // RFC 7662, for resource servers
	RevokeURL     string // RFC 7009

	opts     AuthOptions
	provider fosite.OAuth2Provider
	store    *authStore
	main     *http.Server

	mu         sync.Mutex
	tokenAddr  string
	tokenSrv   *http.Server
	failure    AuthFailure
	failChange chan struct{} // closed when failure changes
	counts     map[string]int64
	forms      []url.Values
	authReqs   []url.Values
	validated  int64
}

// AuthTokenInfo describes a valid access token.
type AuthTokenInfo struct {
	ClientID string
	Subject  string // the resource owner; the client ID for client credentials
	Scopes   []string
	Expiry   time.Time
}

// StartAuthServer starts an authorization server on 127.0.0.1 and stops
// it when the test ends.
func StartAuthServer(t testing.TB, opts AuthOptions) *AuthServer {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = "relay-test"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "relay-secret"
	}
	if opts.Scopes == nil {
		opts.Scopes = []string{"mail", "offline_access", "https://mail.google.com/", "https://outlook.office365.com/.default"}
	}
	if opts.AccessTokenLifespan <= 0 {
		opts.AccessTokenLifespan = time.Hour
	}
	if opts.Subject == "" {
		opts.Subject = "user@example.com"
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := &fosite.Config{
		// fosite truncates expires_in to whole seconds of what is left
		// when it answers; half a second more makes expires_in exactly
		// the lifespan, and the server never refuses a token before the
		// client thinks it expired.
		AccessTokenLifespan:      opts.AccessTokenLifespan + 500*time.Millisecond,
		RefreshTokenLifespan:     24 * time.Hour,
		AuthorizeCodeLifespan:    5 * time.Minute,
		GlobalSecret:             secret,
		HashCost:                 bcrypt.MinCost,
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.DefaultAudienceMatchingStrategy,
		EnforcePKCE:              true, // RFC 9700 §2.1.1
		RefreshTokenScopes:       opts.RefreshTokenScopes,
		// Google's assertions carry neither jti nor nbf.
		GrantTypeJWTBearerIDOptional:        true,
		GrantTypeJWTBearerCanSkipClientAuth: true,
		GrantTypeJWTBearerMaxDuration:       time.Hour + time.Minute,
	}
	if cfg.RefreshTokenScopes == nil {
		cfg.RefreshTokenScopes = []string{} // fosite: empty means always
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(opts.ClientSecret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	st := &authStore{MemoryStore: storage.NewMemoryStore(), revoked: map[string]bool{}}
	st.Clients[opts.ClientID] = &fosite.DefaultClient{
		ID:            opts.ClientID,
		Secret:        hash,
		RedirectURIs:  opts.RedirectURIs,
		GrantTypes:    []string{"client_credentials", "authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"},
		Scopes:        opts.Scopes,
	}
	registerJWTClients(st, opts)
	a := &AuthServer{
		opts:       opts,
		store:      st,
		failChange: make(chan struct{}),
		counts:     map[string]int64{},
	}
	a.provider = compose.Compose(cfg, st, &compose.CommonStrategy{CoreStrategy: compose.NewOAuth2HMACStrategy(cfg)},
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.RFC7523AssertionGrantFactory,
	)

	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", a.authorize)
	mux.HandleFunc("POST /introspect", a.introspect)
	mux.HandleFunc("POST /revoke", a.revoke)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.main = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go a.main.Serve(ln)
	a.URL = "http://" + ln.Addr().String()
	a.AuthURL = a.URL + "/authorize"
	a.IntrospectURL = a.URL + "/introspect"
	a.RevokeURL = a.URL + "/revoke"

	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.tokenAddr = tln.Addr().String()
	a.TokenURL = "http://" + a.tokenAddr + "/token"
	cfg.TokenURL = a.TokenURL // the aud of client assertions and JWT bearer grants
	a.serveToken(tln)
	t.Cleanup(a.close)
	return a
}

func (a *AuthServer) serveToken(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/token", a.token)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// No idle connections: once AuthFailRefuse closes the listener, the
	// next request is refused, rather than failing on a reused
	// connection that the server closed.
	srv.SetKeepAlivesEnabled(false)
	a.tokenSrv = srv
	go srv.Serve(ln)
}

func (a *AuthServer) close() {
	a.SetTokenFailure(AuthFailNone) // release hanging requests
	a.main.Close()
	a.mu.Lock()
	srv := a.tokenSrv
	a.tokenSrv = nil
	a.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// SetTokenFailure makes the token endpoint fail the given way from now on,
// or answer again with AuthFailNone.
func (a *AuthServer) SetTokenFailure(f AuthFailure) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f == a.failure {
		return nil
	}
	switch {
	case f == AuthFailRefuse:
		if a.tokenSrv != nil {
			a.tokenSrv.Close() // closes the listener and every connection
			a.tokenSrv = nil
		}
	case a.failure == AuthFailRefuse:
		ln, err := net.Listen("tcp", a.tokenAddr)
		if err != nil {
			return fmt.Errorf("listen again on %s: %w", a.tokenAddr, err)
		}
		a.serveToken(ln)
	}
	a.failure = f
	close(a.failChange)
	a.failChange = make(chan struct{})
	return nil
}

// TokenRequests returns how many requests of grant_type reached the token
// endpoint (failed ones included); "" counts all.
func (a *AuthServer) TokenRequests(grantType string) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if grantType == "" {
		var n int64
		for _, c := range a.counts {
			n += c
		}
		return n
	}
	return a.counts[grantType]
}

// TokenRequestForms returns the form of every token request so far, with
// the values of secret parameters replaced by "*".
func (a *AuthServer) TokenRequestForms() []url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.forms)
}

// AuthorizationRequests returns the query of every authorization request.
func (a *AuthServer) AuthorizationRequests() []url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.authReqs)
}

// RevokeRefreshTokens revokes every refresh token issued so far; using one
// then gets invalid_grant.
func (a *AuthServer) RevokeRefreshTokens() {
	a.store.mu.Lock()
	defer a.store.mu.Unlock()
	for _, sig := range a.store.issued {
		a.store.revoked[sig] = true
	}
}

// Validate checks an access token as a resource server would, in process.
func (a *AuthServer) Validate(ctx context.Context, token string) (*AuthTokenInfo, error) {
	a.mu.Lock()
	a.validated++
	a.mu.Unlock()
	_, ar, err := a.provider.IntrospectToken(ctx, token, fosite.AccessToken, &fosite.DefaultSession{})
	if err != nil {
		return nil, err
	}
	info := &AuthTokenInfo{
		ClientID: ar.GetClient().GetID(),
		Subject:  ar.GetSession().GetSubject(),
		Scopes:   ar.GetGrantedScopes(),
		Expiry:   ar.GetSession().GetExpiresAt(fosite.AccessToken),
	}
	return info, nil
}

// Validations returns how many times Validate ran.
func (a *AuthServer) Validations() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.validated
}

var secretParams = []string{"client_secret", "code", "code_verifier", "refresh_token"}

func (a *AuthServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	form := url.Values{}
	for k, v := range r.PostForm {
		if slices.Contains(secretParams, k) {
			v = []string{"*"}
		}
		form[k] = slices.Clone(v)
	}
	a.mu.Lock()
	a.counts[r.PostForm.Get("grant_type")]++
	a.forms = append(a.forms, form)
	failure, change := a.failure, a.failChange
	a.mu.Unlock()

	switch failure {
	case AuthFail503:
		http.Error(w, "upstream connect error or disconnect/reset before headers", http.StatusServiceUnavailable)
		return
	case AuthFailHang:
		select {
		case <-change:
		case <-r.Context().Done():
			return
		}
		http.Error(w, "hung request released", http.StatusServiceUnavailable)
		return
	case AuthFailInvalid:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid_client","error_description":"Client authentication failed (test switch)."}`)
		return
	}

	ctx := r.Context()
	ar, err := a.provider.NewAccessRequest(ctx, r, &fosite.DefaultSession{Subject: a.opts.ClientID})
	if err != nil {
		a.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
	}
	resp, err := a.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		a.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	a.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// authStore is fosite's memory store with switchable revocation of refresh
// tokens: a revoked one is "not found", which fosite answers with
// invalid_grant.
type authStore struct {
	*storage.MemoryStore
	mu      sync.Mutex
	issued  []string
	revoked map[string]bool
}

func (s *authStore) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, req fosite.Requester) error {
	s.mu.Lock()
	s.issued = append(s.issued, signature)
	s.mu.Unlock()
	return s.MemoryStore.CreateRefreshTokenSession(ctx, signature, accessSignature, req)
}

func (s *authStore) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	revoked := s.revoked[signature]
	s.mu.Unlock()
	if revoked {
		return nil, fosite.ErrNotFound
	}
	return s.MemoryStore.GetRefreshTokenSession(ctx, signature, session)
}
