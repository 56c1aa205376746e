package testpeer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// DeviceOptions configure a DeviceServer. The zero value is one public
// client "relay-public" that may ask for "mail" and "offline_access".
type DeviceOptions struct {
	ClientID string   // default "relay-public"
	Scopes   []string // default "mail", "offline_access"
	// PollInterval is the interval a client must keep (whole seconds, at
	// least one); a client that polls faster gets slow_down.
	PollInterval time.Duration
	// AnnouncedInterval, if set, is the interval the server names
	// instead, so that a client that obeys it gets slow_down.
	AnnouncedInterval time.Duration
	// Lifetime of a user code; default one minute.
	Lifetime time.Duration
	// AccessTokenLifespan; default one hour.
	AccessTokenLifespan time.Duration
}

// DeviceServer is an authorization server for the device authorization
// grant (RFC 8628), built on zitadel/oidc's op package (fosite v0.49 has
// no RFC 8628): device authorization endpoint, token endpoint for the
// device_code and refresh_token grants of a public client. Approve and
// Deny stand for the person at the verification page. Its token
// endpoint can be switched to fail as AuthServer's.
type DeviceServer struct {
	URL           string // the issuer
	DeviceAuthURL string
	TokenURL      string

	opts    DeviceOptions
	store   *deviceStore
	crypto  op.Crypto
	srv     *http.Server
	mu      sync.Mutex
	failure AuthFailure
	answer  string // a JSON error body every token request gets, or ""
	forms   []url.Values
	polls   []time.Time // device_code token requests
}

// StartDeviceServer starts a DeviceServer on 127.0.0.1 and stops it when
// the test ends.
func StartDeviceServer(t testing.TB, opts DeviceOptions) *DeviceServer {
	t.Helper()
	if opts.ClientID == "" {
		opts.ClientID = "relay-public"
	}
	if opts.Scopes == nil {
		opts.Scopes = []string{"mail", "offline_access"}
	}
	if opts.PollInterval < time.Second {
		opts.PollInterval = time.Second
	}
	if opts.AnnouncedInterval <= 0 {
		opts.AnnouncedInterval = opts.PollInterval
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = time.Minute
	}
	if opts.AccessTokenLifespan <= 0 {
		opts.AccessTokenLifespan = time.Hour
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DeviceServer{opts: opts, URL: "http://" + ln.Addr().String()}
	d.DeviceAuthURL = d.URL + "/device_authorization"
	d.TokenURL = d.URL + "/oauth/token"
	d.store = &deviceStore{opts: opts, devices: map[string]*deviceAuth{}, tokens: map[string]*deviceToken{}, refresh: map[string]*deviceToken{}}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	d.store.key = signingKey{rk}
	var key [32]byte
	rand.Read(key[:])
	d.crypto = op.NewAESCrypto(key)
	cfg := &op.Config{
		CryptoKey:             key,
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     opts.Lifetime,
			PollInterval: opts.AnnouncedInterval,
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}
	provider, err := op.NewProvider(cfg, d.store, op.StaticIssuer(d.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	d.srv = &http.Server{Handler: d.intercept(provider), ReadHeaderTimeout: 10 * time.Second}
	d.srv.SetKeepAlivesEnabled(false)
	go d.srv.Serve(ln)
	t.Cleanup(func() { d.srv.Close() })
	return d
}

// intercept records token requests and applies the failure switch.
func (d *DeviceServer) intercept(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" {
			r.ParseForm()
			d.mu.Lock()
			form := cloneValues(r.PostForm)
			if _, _, ok := r.BasicAuth(); ok {
				form.Set("(basic auth)", "yes") // a client secret in the header (RFC 6749 §2.3.1)
			}
			d.forms = append(d.forms, form)
			if r.PostForm.Get("grant_type") == string(oidc.GrantTypeDeviceCode) {
				d.polls = append(d.polls, time.Now())
			}
			failure, answer := d.failure, d.answer
			d.mu.Unlock()
			if failure == AuthFail503 {
				http.Error(w, "upstream connect error or disconnect/reset before headers", http.StatusServiceUnavailable)
				return
			}
			if answer != "" {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, answer)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// SetTokenFailure makes the token endpoint answer 503 (AuthFail503) or
// normally again (AuthFailNone).
func (d *DeviceServer) SetTokenFailure(f AuthFailure) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failure = f
}

// ClientTOML is an [[oauth2_clients]] table named name for the server's
// public client.
func (d *DeviceServer) ClientTOML(name string) string {
	return fmt.Sprintf("\n[[oauth2_clients]]\nname = %q\nclient_id = %q\nauth_url = %q\ntoken_url = %q\ndevice_auth_url = %q\n",
		name, d.opts.ClientID, d.URL+"/authorize", d.TokenURL, d.DeviceAuthURL)
}

// ProfileTOML is ClientTOML("public") and an interactive profile "dev"
// of that public client, which signs in with a device code here.
func (d *DeviceServer) ProfileTOML() string {
	return d.ClientTOML("public") + `
[[profiles]]
name = "dev"
hostname = "smtp.example.com"
use_starttls = true
username = "operator@example.com"
oauth2_client = "public"
interactive = true
scope = "mail offline_access"
`
}

// SetTokenError makes every token request get HTTP 400 with the RFC 6749
// §5.2 body {"error": code, "error_description": description}, as Entra
// answers with the device flow errors it adds to RFC 8628
// (authorization_declined, bad_verification_code), which no library's
// server issues; "" ends it.
func (d *DeviceServer) SetTokenError(code, description string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answer = ""
	if code != "" {
		b, _ := json.Marshal(map[string]any{"error": code, "error_description": description, "error_codes": []int{70000}})
		d.answer = string(b)
	}
}

// TokenRequestForms returns the form of every token request so far.
func (d *DeviceServer) TokenRequestForms() []url.Values {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.forms)
}

// Polls returns when each device_code token request arrived.
func (d *DeviceServer) Polls() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.polls)
}

// Approve signs subject in for userCode, as the verification page would.
func (d *DeviceServer) Approve(userCode, subject string) error {
	return d.store.decide(userCode, func(a *deviceAuth) { a.state.Done, a.state.Subject, a.state.AuthTime = true, subject, time.Now() })
}

// Deny declines userCode, as the verification page would.
func (d *DeviceServer) Deny(userCode string) error {
	return d.store.decide(userCode, func(a *deviceAuth) { a.state.Denied = true })
}

// Validate returns the subject and scopes of a valid access token.
func (d *DeviceServer) Validate(token string) (subject string, scopes []string, err error) {
	plain, err := d.crypto.Decrypt(token) // op's bearer tokens: "ID:subject", encrypted
	if err != nil {
		return "", nil, err
	}
	id, _, _ := strings.Cut(plain, ":")
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if t := d.store.tokens[id]; t != nil && time.Now().Before(t.expiry) {
		return t.subject, t.scopes, nil
	}
	return "", nil, errors.New("unknown or expired access token")
}

// deviceStore is the op.Storage of a DeviceServer: one public client,
// device authorizations, access and refresh tokens in memory. What the
// device grant does not use answers an error.
type deviceStore struct {
	opts    DeviceOptions
	mu      sync.Mutex
	devices map[string]*deviceAuth // by device code
	tokens  map[string]*deviceToken
	refresh map[string]*deviceToken
	key     signingKey
}

type deviceAuth struct {
	userCode string
	lastPoll time.Time
	state    op.DeviceAuthorizationState
}

type deviceToken struct {
	id, subject string
	scopes      []string
	expiry      time.Time
	clientID    string
}

var errUnused = errors.New("not used by the device grant")

func (s *deviceStore) decide(userCode string, f func(*deviceAuth)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.devices {
		if a.userCode == userCode {
			f(a)
			return nil
		}
	}
	return errors.New("unknown user code " + userCode)
}

func (s *deviceStore) StoreDeviceAuthorization(ctx context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[deviceCode] = &deviceAuth{userCode: userCode, state: op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}}
	return nil
}

// GetDeviceAuthorizatonState answers a poll. A client that polls sooner
// than the interval gets context.DeadlineExceeded, which op turns into
// slow_down (RFC 8628 §3.5).
func (s *deviceStore) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.devices[deviceCode]
	if a == nil || a.state.ClientID != clientID {
		return nil, errors.New("unknown device code")
	}
	now := time.Now()
	early := !a.lastPoll.IsZero() && now.Sub(a.lastPoll) < s.opts.PollInterval-100*time.Millisecond
	a.lastPoll = now
	if early && !a.state.Done && !a.state.Denied {
		return nil, context.DeadlineExceeded
	}
	st := a.state
	if st.Done || st.Denied {
		delete(s.devices, deviceCode) // a device code is redeemed once
	}
	return &st, nil
}

func (s *deviceStore) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	if clientID != s.opts.ClientID {
		return nil, errors.New("unknown client")
	}
	return &publicClient{id: clientID, scopes: s.opts.Scopes}, nil
}

func (s *deviceStore) AuthorizeClientIDSecret(ctx context.Context, clientID, clientSecret string) error {
	return errors.New("a public client has no secret")
}

func (s *deviceStore) newToken(request op.TokenRequest, clientID string) *deviceToken {
	t := &deviceToken{id: rand.Text(), subject: request.GetSubject(), scopes: request.GetScopes(), expiry: time.Now().Add(s.opts.AccessTokenLifespan), clientID: clientID}
	s.tokens[t.id] = t
	return t
}

func (s *deviceStore) CreateAccessToken(ctx context.Context, request op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newToken(request, s.opts.ClientID)
	return t.id, t.expiry, nil
}

func (s *deviceStore) CreateAccessAndRefreshTokens(ctx context.Context, request op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if currentRefreshToken != "" {
		if s.refresh[currentRefreshToken] == nil {
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
		delete(s.refresh, currentRefreshToken) // rotation
	}
	t := s.newToken(request, s.opts.ClientID)
	rt := rand.Text()
	s.refresh[rt] = t
	return t.id, rt, t.expiry, nil
}

func (s *deviceStore) TokenRequestByRefreshToken(ctx context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.refresh[refreshToken]
	if t == nil {
		return nil, op.ErrInvalidRefreshToken
	}
	return &refreshRequest{DeviceAuthorizationState: op.DeviceAuthorizationState{ClientID: t.clientID, Subject: t.subject, Scopes: t.scopes}}, nil
}

func (s *deviceStore) SetIntrospectionFromToken(ctx context.Context, r *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	return errUnused
}

type refreshRequest struct{ op.DeviceAuthorizationState }

func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.Scopes = scopes }

func (s *deviceStore) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, errUnused
}
func (s *deviceStore) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errUnused
}
func (s *deviceStore) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errUnused
}
func (s *deviceStore) SaveAuthCode(context.Context, string, string) error { return errUnused }
func (s *deviceStore) DeleteAuthRequest(context.Context, string) error    { return errUnused }
func (s *deviceStore) TerminateSession(context.Context, string, string) error {
	return errUnused
}
func (s *deviceStore) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrUnsupportedGrantType()
}
func (s *deviceStore) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", errUnused
}

// SigningKey signs the ID tokens op makes on refresh.
func (s *deviceStore) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

type signingKey struct{ k *rsa.PrivateKey }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.k }
func (k signingKey) ID() string                                  { return "device-test" }
func (s *deviceStore) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *deviceStore) KeySet(context.Context) ([]op.Key, error) { return nil, nil }
func (s *deviceStore) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}
func (s *deviceStore) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errUnused
}
func (s *deviceStore) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}
func (s *deviceStore) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errUnused
}
func (s *deviceStore) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errUnused
}
func (s *deviceStore) Health(context.Context) error { return nil }

// publicClient is a native application without a secret that may use the
// device and refresh grants.
type publicClient struct {
	id     string
	scopes []string
}

func (c *publicClient) GetID() string                       { return c.id }
func (c *publicClient) RedirectURIs() []string              { return nil }
func (c *publicClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *publicClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeNative }
func (c *publicClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodNone }
func (c *publicClient) ResponseTypes() []oidc.ResponseType  { return nil }
func (c *publicClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeDeviceCode, oidc.GrantTypeRefreshToken}
}
func (c *publicClient) LoginURL(string) string               { return "" }
func (c *publicClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *publicClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (c *publicClient) DevMode() bool                        { return true }
func (c *publicClient) IsScopeAllowed(scope string) bool     { return slices.Contains(c.scopes, scope) }
func (c *publicClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *publicClient) ClockSkew() time.Duration             { return 0 }
func (c *publicClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *publicClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
