package oauth

import (
	"net/url"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/microsoft"

	"github.com/relaymail/relay/config"
)

// Endpoint returns the endpoints of OAuth2 client oc: its auth_url,
// token_url and device_auth_url, each one left out taken from the preset
// of its provider. "google" is golang.org/x/oauth2/google's Endpoint
// without its device authorization URL (Google's device flow does not
// grant the mail scope); "microsoft" is the Microsoft identity platform of
// the client's tenant, device code endpoint included (RFC 8628 §3.1).
func Endpoint(oc *config.OAuth2Client) oauth2.Endpoint {
	var preset oauth2.Endpoint
	switch oc.Provider {
	case "google":
		preset = oauth2.Endpoint{AuthURL: google.Endpoint.AuthURL, TokenURL: google.Endpoint.TokenURL}
	case "microsoft":
		tenant := oc.Tenant
		if tenant == "" {
			tenant = "common"
		}
		preset = microsoft.AzureADEndpoint(url.PathEscape(tenant))
	}
	e := oauth2.Endpoint{AuthURL: oc.AuthURL, TokenURL: oc.TokenURL, DeviceAuthURL: oc.DeviceAuthURL}
	if e.AuthURL == "" {
		e.AuthURL = preset.AuthURL
	}
	if e.TokenURL == "" {
		e.TokenURL = preset.TokenURL
	}
	if e.DeviceAuthURL == "" {
		e.DeviceAuthURL = preset.DeviceAuthURL
	}
	return e
}
