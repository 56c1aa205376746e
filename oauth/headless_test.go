package oauth_test

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

const secretsDir = "../testdata/config/secrets/"

func readCert(t *testing.T) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(secretsDir + "entra.crt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serviceAccountKey returns the email, key ID and public key of the test
// service account key file.
func serviceAccountKey(t *testing.T) (string, string, *rsa.PublicKey) {
	t.Helper()
	data, err := os.ReadFile(secretsDir + "sa.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ ClientEmail, PrivateKeyID, PrivateKey string }
	var raw map[string]string
	json.Unmarshal(data, &raw)
	f.ClientEmail, f.PrivateKeyID, f.PrivateKey = raw["client_email"], raw["private_key_id"], raw["private_key"]
	b, _ := pem.Decode([]byte(f.PrivateKey))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return f.ClientEmail, f.PrivateKeyID, &k.(*rsa.PrivateKey).PublicKey
}

func parseConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(text))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		t.Fatalf("config.Parse:\n%s\n%v", text, err)
	}
	return cfg
}

func newManager(t *testing.T, cfg *config.Config, logs *testpeer.Buffer) *oauth.Manager {
	t.Helper()
	m, err := oauth.NewManager(cfg, oauth.Options{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// verifyJWT checks the signature of a compact JWS with key and returns its
// header and claims.
func verifyJWT(t *testing.T, compact string, key any) (jose.Header, map[string]any) {
	t.Helper()
	jws, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse assertion: %v", err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header, claims
}

// TestCertificateCredentials gets client-credentials tokens with a
// client assertion (RFC 7523 §2.2) from fosite, which checks the
// signature, aud, iss = sub, exp and jti reuse; the test checks every
// claim and header again, and that no secret is sent.
func TestCertificateCredentials(t *testing.T) {
	cert := readCert(t)
	as := testpeer.StartAuthServer(t, testpeer.AuthOptions{CertificateClients: []testpeer.CertificateClient{{ID: "relay-cert", PublicKey: cert.PublicKey}}})
	cfg := parseConfig(t, fmt.Sprintf(`
[[oauth2_clients]]
name = "entra-cert"
client_id = "relay-cert"
token_url = %q
client_certificate_file = "%sentra.crt"
client_key_file = "%sentra.key"

[[profiles]]
name = "o365"
hostname = "smtp.example.com"
use_starttls = true
username = "alarms@example.com"
oauth2_client = "entra-cert"
scope = "https://outlook.office365.com/.default"
`, as.TokenURL, secretsDir, secretsDir))
	m := newManager(t, cfg, &testpeer.Buffer{})
	s := m.Source("o365")
	tok := token(t, s)
	info, err := as.Validate(context.Background(), tok)
	if err != nil || info.ClientID != "relay-cert" {
		t.Fatalf("Validate(token) = %+v, %v; want a token of client relay-cert", info, err)
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() = %v; want a second token with a fresh assertion", err)
	}
	forms := as.TokenRequestForms()
	if len(forms) != 2 {
		t.Fatalf("%d token requests; want 2", len(forms))
	}
	thumb := sha256.Sum256(cert.Raw)
	jtis := map[string]bool{}
	for i, f := range forms {
		if f.Has("client_secret") {
			t.Errorf("request %d carries client_secret", i)
		}
		if got := f.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("request %d: client_assertion_type = %q", i, got)
		}
		h, c := verifyJWT(t, f.Get("client_assertion"), cert.PublicKey)
		if got := h.ExtraHeaders["x5t#S256"]; got != base64.RawURLEncoding.EncodeToString(thumb[:]) {
			t.Errorf("request %d: x5t#S256 = %v; want the certificate's SHA-256 thumbprint", i, got)
		}
		if h.Algorithm != "RS256" {
			t.Errorf("request %d: alg = %q; want RS256", i, h.Algorithm)
		}
		if c["aud"] != as.TokenURL || c["iss"] != "relay-cert" || c["sub"] != "relay-cert" {
			t.Errorf("request %d: aud, iss, sub = %v, %v, %v; want %s, relay-cert, relay-cert", i, c["aud"], c["iss"], c["sub"], as.TokenURL)
		}
		jti, _ := c["jti"].(string)
		if jti == "" || jtis[jti] {
			t.Errorf("request %d: jti %q is empty or used before", i, jti)
		}
		jtis[jti] = true
		now := float64(time.Now().Unix())
		nbf, iat, exp := c["nbf"].(float64), c["iat"].(float64), c["exp"].(float64)
		if nbf != iat || now-iat > 10 || iat > now+1 {
			t.Errorf("request %d: nbf %v, iat %v; want both now (%v)", i, nbf, iat, now)
		}
		if exp <= iat || exp-iat > 600 {
			t.Errorf("request %d: exp - iat = %v s; want (0, 600]", i, exp-iat)
		}
	}
}

// TestServiceAccount gets tokens with the JWT bearer grant (RFC 7523
// §2.1) of a service account impersonating the profile's username, from
// fosite's RFC 7523 handler, and checks the assertion's claims.
func TestServiceAccount(t *testing.T) {
	email, kid, pub := serviceAccountKey(t)
	as := testpeer.StartAuthServer(t, testpeer.AuthOptions{ServiceAccounts: []testpeer.ServiceAccount{{
		Email: email, KeyID: kid, PublicKey: pub, Subjects: []string{"alarms@example.com"}, Scopes: []string{"https://mail.google.com/"},
	}}})
	cfg := parseConfig(t, fmt.Sprintf(`
[[oauth2_clients]]
name = "workspace"
provider = "google"
token_url = %q
service_account_file = "%ssa.json"

[[profiles]]
name = "gmail"
hostname = "smtp.gmail.com"
use_ssl = true
port = 465
username = "alarms@example.com"
oauth2_client = "workspace"

[[profiles]]
name = "stranger"
hostname = "smtp.gmail.com"
use_ssl = true
port = 465
username = "nobody@example.com"
oauth2_client = "workspace"
access_token_timeout = "10s"
`, as.TokenURL, secretsDir))
	m := newManager(t, cfg, &testpeer.Buffer{})
	tok := token(t, m.Source("gmail"))
	info, err := as.Validate(context.Background(), tok)
	if err != nil || info.Subject != "alarms@example.com" {
		t.Fatalf("Validate(token) = %+v, %v; want subject alarms@example.com", info, err)
	}
	f := as.TokenRequestForms()[0]
	if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || f.Has("client_secret") {
		t.Errorf("token request %v; want the JWT bearer grant without a secret", f)
	}
	h, c := verifyJWT(t, f.Get("assertion"), pub)
	if h.KeyID != kid || c["iss"] != email || c["sub"] != "alarms@example.com" || c["scope"] != "https://mail.google.com/" || c["aud"] != as.TokenURL {
		t.Errorf("assertion kid %q, claims %v; want kid %s, iss %s, sub alarms@example.com, scope https://mail.google.com/, aud %s", h.KeyID, c, kid, email, as.TokenURL)
	}
	if st := m.Source("gmail").Status(); st.HasRefreshToken || st.State != oauth.StateValid {
		t.Errorf("status %+v; want a valid token and no refresh token", st)
	}

	// A user the delegation does not cover: refused, a person must act.
	_, err = m.Source("stranger").Token(context.Background())
	var te *oauth.TokenError
	if !errors.As(err, &te) || !te.NeedsAction || te.Code != "invalid_grant" {
		t.Fatalf("Token() of an undelegated user = %v; want a NeedsAction invalid_grant", err)
	}
}

// deviceEnv is a DeviceServer and a Manager with one interactive profile
// "dev" on it, whose client is public.
func deviceEnv(t *testing.T, opts testpeer.DeviceOptions, extra string) (*testpeer.DeviceServer, *oauth.Manager, *testpeer.Buffer) {
	t.Helper()
	ds := testpeer.StartDeviceServer(t, opts)
	cfg := parseConfig(t, ds.ProfileTOML()+extra)
	logs := &testpeer.Buffer{}
	return ds, newManager(t, cfg, logs), logs
}

// waitDevice waits until the profile's device sign-in leaves pending.
func waitDevice(t *testing.T, s *oauth.TokenSource, within time.Duration) oauth.DeviceGrant {
	t.Helper()
	deadline := time.After(within)
	for {
		changed := s.Changed()
		g, ok := s.Device()
		if ok && g.State != oauth.DevicePending {
			return g
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("device sign-in still %q after %v", g.State, within)
		}
	}
}

func noSecret(t *testing.T, ds *testpeer.DeviceServer) {
	t.Helper()
	for i, f := range ds.TokenRequestForms() {
		if f.Has("client_secret") || f.Has("client_assertion") || f.Has("(basic auth)") {
			t.Errorf("token request %d of a public client carries a credential: %v", i, f)
		}
		if f.Get("client_id") != "relay-public" {
			t.Errorf("token request %d: client_id %q; want relay-public", i, f.Get("client_id"))
		}
	}
}

// TestDeviceGranted: the person signs in; tokens arrive and are renewed
// with the refresh token, never with a client_secret.
func TestDeviceGranted(t *testing.T) {
	t.Parallel() // each has its own servers; they wait in real time
	ds, m, logs := deviceEnv(t, testpeer.DeviceOptions{}, "")
	g, err := m.StartDevice(context.Background(), "dev")
	if err != nil {
		t.Fatalf("StartDevice = %v", err)
	}
	if g.UserCode == "" || !strings.HasPrefix(g.VerificationURI, ds.URL) || g.Interval != 1 || g.ExpiresIn < 50 || !strings.Contains(g.Message, g.UserCode) {
		t.Fatalf("StartDevice = %+v; want a user code, the verification URI, interval 1 and expires_in ~60", g)
	}
	time.Sleep(1500 * time.Millisecond) // at least one authorization_pending
	if err := ds.Approve(g.UserCode, "operator@example.com"); err != nil {
		t.Fatal(err)
	}
	if got := waitDevice(t, m.Source("dev"), 20*time.Second); got.State != oauth.DeviceGranted {
		t.Fatalf("device sign-in %+v; want granted", got)
	}
	s := m.Source("dev")
	sub, _, err := ds.Validate(token(t, s))
	if err != nil || sub != "operator@example.com" {
		t.Fatalf("Validate = %q, %v; want operator@example.com", sub, err)
	}
	if !s.Status().HasRefreshToken {
		t.Fatal("no refresh token after the device grant")
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() of a public client = %v", err)
	}
	if len(ds.Polls()) < 2 {
		t.Errorf("%d polls; want an authorization_pending one before the grant", len(ds.Polls()))
	}
	noSecret(t, ds)
	if strings.Contains(logs.String(), tokenOf(t, s)) {
		t.Errorf("the access token reached the log:\n%s", logs)
	}
}

func tokenOf(t *testing.T, s *oauth.TokenSource) string { return token(t, s) }

// TestDeviceOutcomes: each way a device sign-in ends without tokens, with
// the server's text and a hint.
func TestDeviceOutcomes(t *testing.T) {
	t.Parallel() // each has its own servers; they wait in real time
	tests := []struct {
		name      string
		opts      testpeer.DeviceOptions
		act       func(ds *testpeer.DeviceServer, userCode string)
		state     string
		errorPart string
	}{
		{"declined", testpeer.DeviceOptions{}, func(ds *testpeer.DeviceServer, c string) { ds.Deny(c) }, oauth.DeviceDeclined, "access_denied"},
		{"expired", testpeer.DeviceOptions{Lifetime: 2 * time.Second}, func(*testpeer.DeviceServer, string) {}, oauth.DeviceExpired, "expired_token"},
		{"entra authorization_declined", testpeer.DeviceOptions{}, func(ds *testpeer.DeviceServer, _ string) {
			ds.SetTokenError("authorization_declined", "AADSTS70000: The user declined the authorization request.")
		}, oauth.DeviceDeclined, "authorization_declined: AADSTS70000"},
		{"entra bad_verification_code", testpeer.DeviceOptions{}, func(ds *testpeer.DeviceServer, _ string) {
			ds.SetTokenError("bad_verification_code", "AADSTS70019: Verification code expired or invalid.")
		}, oauth.DeviceFailed, "bad_verification_code"},
		{"entra expired_token", testpeer.DeviceOptions{}, func(ds *testpeer.DeviceServer, _ string) {
			ds.SetTokenError("expired_token", "AADSTS70020: The provided value for the input parameter 'device_code' is not valid.")
		}, oauth.DeviceExpired, "expired_token: AADSTS70020"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ds, m, _ := deviceEnv(t, tt.opts, "")
			g, err := m.StartDevice(context.Background(), "dev")
			if err != nil {
				t.Fatal(err)
			}
			tt.act(ds, g.UserCode)
			got := waitDevice(t, m.Source("dev"), 20*time.Second)
			if got.State != tt.state || !strings.Contains(got.Error, tt.errorPart) || got.Hint == "" {
				t.Fatalf("device sign-in %+v; want state %s, an error with %q and a hint", got, tt.state, tt.errorPart)
			}
			st := m.Source("dev").Status()
			if !strings.Contains(st.LastError, tt.errorPart) || st.Hint == "" {
				t.Errorf("status %+v; want the error as last error, with a hint", st)
			}
			noSecret(t, ds)
		})
	}
}

// TestDeviceSlowDown: after slow_down the client waits 5 s longer for
// every later poll (RFC 8628 §3.5), and the grant still succeeds.
func TestDeviceSlowDown(t *testing.T) {
	t.Parallel() // each has its own servers; they wait in real time
	ds, m, _ := deviceEnv(t, testpeer.DeviceOptions{PollInterval: 2 * time.Second, AnnouncedInterval: time.Second}, "")
	g, err := m.StartDevice(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // polls at 1 s and 2 s: the second is early
	ds.Approve(g.UserCode, "operator@example.com")
	if got := waitDevice(t, m.Source("dev"), 20*time.Second); got.State != oauth.DeviceGranted {
		t.Fatalf("device sign-in %+v; want granted", got)
	}
	polls := ds.Polls()
	if len(polls) < 3 {
		t.Fatalf("%d polls; want at least 3", len(polls))
	}
	if gap := polls[2].Sub(polls[1]); gap < 6*time.Second-200*time.Millisecond {
		t.Errorf("poll after slow_down came %v after the one before; want 1 s + 5 s", gap)
	}
}

// TestDeviceOutageWhilePending: the token endpoint fails while the person
// signs in; polling goes on and the grant succeeds once it is back.
func TestDeviceOutageWhilePending(t *testing.T) {
	t.Parallel() // each has its own servers; they wait in real time
	ds, m, _ := deviceEnv(t, testpeer.DeviceOptions{}, "")
	g, err := m.StartDevice(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	ds.SetTokenFailure(testpeer.AuthFail503)
	ds.Approve(g.UserCode, "operator@example.com")
	time.Sleep(2500 * time.Millisecond)
	if d, _ := m.Source("dev").Device(); d.State != oauth.DevicePending {
		t.Fatalf("during the outage the sign-in is %+v; want pending", d)
	}
	ds.SetTokenFailure(testpeer.AuthFailNone)
	if got := waitDevice(t, m.Source("dev"), 20*time.Second); got.State != oauth.DeviceGranted {
		t.Fatalf("device sign-in %+v; want granted after the outage", got)
	}
}

// TestDeviceOutageWhileTokensExpire: after a device grant the token
// endpoint goes down and the access token expires: callers (mail) get a
// temporary error, the refresh token stays, and once the endpoint is back
// a token arrives without a new sign-in.
func TestDeviceOutageWhileTokensExpire(t *testing.T) {
	t.Parallel() // each has its own servers; they wait in real time
	ds, m, _ := deviceEnv(t, testpeer.DeviceOptions{AccessTokenLifespan: 2 * time.Second}, `access_token_timeout = "1s"
refresh_before_expiration = "0s"`)
	g, err := m.StartDevice(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	ds.Approve(g.UserCode, "operator@example.com")
	waitDevice(t, m.Source("dev"), 20*time.Second)
	s := m.Source("dev")
	ds.SetTokenFailure(testpeer.AuthFail503)
	time.Sleep(2500 * time.Millisecond)
	_, err = s.Token(context.Background())
	var te *oauth.TokenError
	if !errors.As(err, &te) || !te.Temporary || te.NeedsAction {
		t.Fatalf("Token() during the outage = %v; want a temporary error (the message waits)", err)
	}
	if st := s.Status(); !st.HasRefreshToken || st.State == oauth.StateInvalid {
		t.Fatalf("status during the outage %+v; want the refresh token kept, no new grant needed", st)
	}
	ds.SetTokenFailure(testpeer.AuthFailNone)
	deadline := time.Now().Add(20 * time.Second)
	for {
		tok, err := s.Token(context.Background())
		if err == nil {
			if sub, _, verr := ds.Validate(tok); verr != nil || sub != "operator@example.com" {
				t.Fatalf("token after the outage: %q, %v", sub, verr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token after the outage: %v", err)
		}
	}
}

// TestDeviceGoogleMailScope: Google refuses Gmail's scope in its device
// flow, so relay refuses before asking and names the two ways that work.
func TestDeviceGoogleMailScope(t *testing.T) {
	cfg := parseConfig(t, `
[[oauth2_clients]]
name = "google"
provider = "google"
client_id = "1234-abc.apps.googleusercontent.com"
device_auth_url = "http://127.0.0.1:9/device"

[[profiles]]
name = "gmail"
hostname = "smtp.gmail.com"
use_ssl = true
port = 465
username = "reports@example.com"
oauth2_client = "google"
interactive = true
scope = "https://mail.google.com/"
`)
	m := newManager(t, cfg, &testpeer.Buffer{})
	_, err := m.StartDevice(context.Background(), "gmail")
	if err == nil || !strings.Contains(err.Error(), "service account") || !strings.Contains(err.Error(), "paste") {
		t.Fatalf("StartDevice = %v; want a refusal naming service accounts and the pasted redirect", err)
	}
	if st := m.Source("gmail").Status(); st.Requests != 0 {
		t.Errorf("%d requests; want none", st.Requests)
	}
}

// TestCertificateConfidentialGrant: an interactive profile of a client
// with a certificate authenticates the code exchange and the refresh with
// client assertions too, never with a secret.
func TestCertificateConfidentialGrant(t *testing.T) {
	cert := readCert(t)
	e := newEnv(t, testpeer.AuthOptions{CertificateClients: []testpeer.CertificateClient{{ID: "relay-cert", PublicKey: cert.PublicKey}}})
	cfg := parseConfig(t, fmt.Sprintf(`
[server]
data_dir = %q

[[oauth2_clients]]
name = "entra-cert"
client_id = "relay-cert"
auth_url = %q
token_url = %q
redirect_url = %q
client_certificate_file = "%sentra.crt"
client_key_file = "%sentra.key"

[[profiles]]
name = "mailbox"
hostname = "smtp.example.com"
use_starttls = true
username = "alarms@example.com"
oauth2_client = "entra-cert"
interactive = true
scope = "mail offline_access"
`, e.dir, e.as.AuthURL, e.as.TokenURL, e.redirectURL(), secretsDir, secretsDir))
	m := e.manager(cfg)
	e.grant(m, "mailbox")
	if err := m.Source("mailbox").Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() = %v", err)
	}
	forms := e.as.TokenRequestForms()
	grants := []string{}
	for _, f := range forms {
		grants = append(grants, f.Get("grant_type"))
		if f.Has("client_secret") || f.Get("client_assertion") == "" {
			t.Errorf("%s request without a client assertion, or with a secret: %v", f.Get("grant_type"), f)
		}
	}
	if strings.Join(grants, " ") != "authorization_code refresh_token" {
		t.Errorf("token requests %v; want the code exchange and a refresh", grants)
	}
}
