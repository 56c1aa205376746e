package oauth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/relaymail/relay/config"
)

// settings is what a TokenSource takes from its profile and OAuth2 client,
// copied so that a config reload cannot change it under a request.
type settings struct {
	profile     string
	interactive bool

	clientID, clientSecret string
	authURL, tokenURL      string
	deviceAuthURL          string
	redirectURL            string
	scopes                 []string
	provider               string // "", "google" or "microsoft"

	// At most one credential besides clientSecret; none and no secret:
	// a public client.
	cert     *config.ClientCertificate
	sa       *config.ServiceAccount
	username string // the mailbox a service account impersonates

	timeout           time.Duration // access_token_timeout
	defaultExpiration time.Duration // default_access_token_expiration
	refreshBefore     time.Duration // refresh_before_expiration

	// The four tables of additional parameters, each sent only on its
	// own kind of request, without the keys the protocol sets itself.
	authParams    url.Values // authorization request (interactive)
	codeParams    url.Values // authorization code token request (interactive)
	ccParams      url.Values // client credentials token request (non-interactive)
	refreshParams url.Values // refresh token request (interactive)

	fingerprint string
}

// Keys of each request that the flow sets itself; a table may not
// override them (RFC 6749 §4.1.1, §4.1.3, §4.4.2, §6; RFC 7636 §4.3).
var (
	reservedAuth    = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"}
	reservedCode    = []string{"grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret"}
	reservedCC      = []string{"grant_type", "scope", "client_id", "client_secret"}
	reservedRefresh = []string{"grant_type", "refresh_token", "client_id", "client_secret"}
)

// newSettings reads the OAuth2 settings of p. It returns the names of
// table keys it left out because the flow sets them itself.
func newSettings(cfg *config.Config, p *config.Profile) (settings, []string) {
	oc := p.Client
	if oc == nil {
		oc = &config.OAuth2Client{}
	}
	endpoint := Endpoint(oc)
	s := settings{
		profile:           p.Name,
		interactive:       p.Interactive,
		clientID:          oc.ClientID,
		clientSecret:      oc.ClientSecret,
		authURL:           endpoint.AuthURL,
		tokenURL:          endpoint.TokenURL,
		deviceAuthURL:     endpoint.DeviceAuthURL,
		provider:          oc.Provider,
		cert:              oc.Certificate,
		sa:                oc.ServiceAccount,
		scopes:            strings.Fields(p.Scope),
		timeout:           p.AccessTokenTimeout.D(),
		defaultExpiration: p.DefaultAccessTokenExpiration.D(),
		refreshBefore:     p.RefreshBeforeExpiration.D(),
	}
	if p.Interactive {
		s.redirectURL = cfg.RedirectURL(p.Client)
	}
	var skipped []string
	table := func(name string, m map[string]string, reserved []string) url.Values {
		if len(m) == 0 {
			return nil
		}
		v := url.Values{}
		for k, val := range m {
			if slices.Contains(reserved, k) {
				skipped = append(skipped, name+"."+k)
				continue
			}
			v.Set(k, val)
		}
		return v
	}
	if p.Interactive {
		s.authParams = table("authorization_request_params", p.AuthorizationRequestParams, reservedAuth)
		s.codeParams = table("authorization_code_token_params", p.AuthorizationCodeTokenParams, reservedCode)
		s.refreshParams = table("refresh_token_params", p.RefreshTokenParams, reservedRefresh)
	} else {
		s.ccParams = table("client_credentials_token_params", p.ClientCredentialsTokenParams, reservedCC)
	}
	if s.sa != nil {
		s.username = p.Username
		if len(s.scopes) == 0 {
			s.scopes = []string{"https://mail.google.com/"} // Gmail's only SMTP scope
		}
	}
	sort.Strings(skipped)
	fp := fmt.Appendf(nil, "%t\x00%s\x00%s\x00%s", s.interactive, s.clientID, s.tokenURL, strings.Join(s.scopes, " "))
	if s.sa != nil {
		// A token of one impersonated mailbox is not another's.
		fp = fmt.Appendf(fp, "\x00%s\x00%s", s.sa.ClientEmail, s.username)
	}
	sum := sha256.Sum256(fp)
	s.fingerprint = hex.EncodeToString(sum[:12])
	return s, skipped
}

// public reports whether the client has no credential: it never sends
// client_secret (Entra answers AADSTS700025 otherwise).
func (s *settings) public() bool { return s.clientSecret == "" && s.cert == nil && s.sa == nil }

// grantType names the grant a profile uses to get access tokens.
func (s *settings) grantType(hasRefresh bool) string {
	switch {
	case s.sa != nil:
		return "jwt_bearer" // RFC 7523 §2.1
	case !s.interactive:
		return "client_credentials"
	case hasRefresh:
		return "refresh_token"
	}
	return "authorization_code"
}
