package admin

import (
	"context"

	"github.com/relaymail/relay/oauth"
)

// Tokens is what the admin pages and API need of the OAuth2 token manager:
// the state of each OAuth2 profile's tokens, a refresh now, and the
// authorization code grant. It never hands out a token or a secret.
type Tokens interface {
	// Statuses returns the state of every OAuth2 profile, in
	// configuration order.
	Statuses() []oauth.Status
	// Refresh obtains a new access token for profile now and waits for
	// it: client credentials, or the refresh token.
	Refresh(ctx context.Context, profile string) error
	// StartGrant begins the authorization code grant of an interactive
	// profile and returns the URL to send the browser to.
	StartGrant(profile string) (authURL string, err error)
	// CompleteGrant redeems the code of the redirect that carries state
	// (state and PKCE checked) and returns the profile it was for.
	CompleteGrant(ctx context.Context, state, code string) (profile string, err error)
	// DenyGrant ends the grant of state after the authorization server
	// redirected with an error, records the error for the profile and
	// returns the profile, or "" for an unknown state.
	DenyGrant(state, code, description string) (profile string)
	// StartDevice begins a device code sign-in (RFC 8628) of an
	// interactive profile; the token manager polls until it ends, and
	// Status.Device shows how it goes.
	StartDevice(ctx context.Context, profile string) (oauth.DeviceGrant, error)
	// CompleteRedirect finishes profile's authorization code grant with
	// the address a browser elsewhere ended on (state and PKCE checked).
	CompleteRedirect(ctx context.Context, profile, redirectURL string) error
}

// The oauth package's Manager is the Tokens relay runs with.
var _ Tokens = (*oauth.Manager)(nil)

// tokenStatus finds profile's status; ok is false when it has none (not
// an OAuth2 profile, or no token manager).
func tokenStatus(tk Tokens, profile string) (oauth.Status, bool) {
	if tk == nil {
		return oauth.Status{}, false
	}
	for _, st := range tk.Statuses() {
		if st.Profile == profile {
			return st, true
		}
	}
	return oauth.Status{}, false
}
