package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/relaymail/relay/config"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// The client assertion of RFC 7523 §2.2 (client authentication with a
// signed JWT, Microsoft's "certificate credentials").
const (
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" // RFC 7523 §2.2
	// assertionLifetime is how long a client assertion is valid. Entra
	// accepts at most 10 minutes; each request gets a fresh one.
	assertionLifetime = 5 * time.Minute
)

// clientAssertion returns the parameters that authenticate one token
// request with cert: client_assertion_type and a client_assertion signed
// with RS256, header x5t#S256 (the certificate's SHA-256 thumbprint), and
// claims aud = the token URL, iss = sub = client_id, a unique jti, nbf and
// iat now, exp assertionLifetime later (RFC 7523 §3).
func clientAssertion(cert *config.ClientCertificate, clientID, tokenURL string, now time.Time) (url.Values, error) {
	thumb := sha256.Sum256(cert.Chain[0])
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(thumb[:]))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: cert.Key}, opts)
	if err != nil {
		return nil, fmt.Errorf("client assertion signer: %w", err)
	}
	claims, err := json.Marshal(map[string]any{
		"aud": tokenURL,
		"iss": clientID,
		"sub": clientID,
		"jti": randomString(),
		"nbf": now.Unix(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return nil, err
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		return nil, fmt.Errorf("sign the client assertion: %w", err)
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("sign the client assertion: %w", err)
	}
	return url.Values{"client_assertion_type": {assertionType}, "client_assertion": {compact}}, nil
}

// credentialParams are the parameters that authenticate a request of
// set's client in the request body: a fresh client assertion for a
// certificate, nothing otherwise (a secret goes by x/oauth2's AuthStyle;
// a public client sends only client_id).
func (set *settings) credentialParams() (url.Values, error) {
	if set.cert == nil {
		return nil, nil
	}
	return clientAssertion(set.cert, set.clientID, set.tokenURL, time.Now())
}

// authOptions turns credentialParams into options for x/oauth2's
// Exchange and DeviceAuth.
func authOptions(v url.Values) []oauth2.AuthCodeOption {
	var opts []oauth2.AuthCodeOption
	for k, vs := range v {
		opts = append(opts, oauth2.SetAuthURLParam(k, vs[0]))
	}
	return opts
}

// serviceAccountConfig is the JWT bearer grant (RFC 7523 §2.1) of a Google
// service account impersonating username (domain-wide delegation): each
// token request carries a new assertion with iss = the service account,
// sub = username, scope and aud = the token URL. The client's token_url
// (Google's by default) is used, not the key file's token_uri, so that
// one setting decides where tokens come from.
func serviceAccountConfig(sa *config.ServiceAccount, username, tokenURL string, scopes []string) (*jwt.Config, error) {
	var f struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal(sa.JSON, &f); err != nil {
		return nil, fmt.Errorf("service account key file: %w", err)
	}
	return &jwt.Config{
		Email:        sa.ClientEmail,
		PrivateKey:   []byte(f.PrivateKey),
		PrivateKeyID: sa.PrivateKeyID,
		Subject:      username,
		Scopes:       scopes,
		TokenURL:     tokenURL,
	}, nil
}

// tokenRequest makes one request to the token endpoint with conf: the
// client credentials grant, or the grant that params' grant_type names,
// authenticated as set's client. The caller holds s.sem: one Config per
// source keeps x/oauth2's memory of how the server wants the client
// authenticated, and this is its only user.
func (s *TokenSource) tokenRequest(ctx context.Context, conf *clientcredentials.Config, set *settings, scopes []string, params url.Values) (*oauth2.Token, error) {
	cred, err := set.credentialParams()
	if err != nil {
		return nil, err
	}
	all := url.Values{}
	for k, v := range params {
		all[k] = v
	}
	for k, v := range cred {
		all[k] = v
	}
	conf.Scopes, conf.EndpointParams = scopes, all
	return conf.Token(s.m.withHTTP(ctx))
}
