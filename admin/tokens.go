package admin

import (
	"context"
	"time"
)

// Token states, as TokenStatus.State reports them (the oauth package's).
const (
	StateValid   = "valid"   // an access token that has not expired
	StateExpired = "expired" // the access token expired; it is renewed without help
	StateAbsent  = "absent"  // no access token yet; one is fetched without help
	StateInvalid = "invalid" // a person must act: grant a new token or fix the configuration
)

// Tokens is what the admin pages and API need of the OAuth2 token manager:
// the state of each OAuth2 profile's tokens, a refresh now, and the
// authorization code grant. It never hands out a token or a secret.
type Tokens interface {
	// Statuses returns the state of every OAuth2 profile, in
	// configuration order.
	Statuses() []TokenStatus
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
	// TokenStatus.Grant shows how it goes.
	StartDevice(ctx context.Context, profile string) (DeviceStart, error)
	// CompleteRedirect finishes profile's authorization code grant with
	// the address a browser elsewhere ended on (state and PKCE checked).
	CompleteRedirect(ctx context.Context, profile, redirectURL string) error
}

// DeviceStart is the answer of POST /api/tokens/NAME/grant with
// {"method": "device"}: what the person must do.
type DeviceStart struct {
	Profile         string `json:"profile"`
	Method          string `json:"method"` // "device"
	UserCode        string `json:"user_code"`
	VerificationURI string `json:"verification_uri"`
	ExpiresIn       int    `json:"expires_in"`
	Interval        int    `json:"interval"`
	Message         string `json:"message"`
}

// Grant states, as GrantState.State reports them.
const (
	GrantPending  = "pending"
	GrantGranted  = "granted"
	GrantDeclined = "declined"
	GrantExpired  = "expired"
	GrantFailed   = "failed"
)

// GrantState is the last device code sign-in of a profile.
type GrantState struct {
	Method          string `json:"method"` // "device"
	State           string `json:"state"`  // GrantPending, GrantGranted, ...
	UserCode        string `json:"user_code,omitempty"`
	VerificationURI string `json:"verification_uri,omitempty"`
	Error           string `json:"error,omitempty"`
	Hint            string `json:"hint,omitempty"`
}

// TokenStatus is the state of one OAuth2 profile's tokens. It holds no
// secret: whether a refresh token is held, never the token.
type TokenStatus struct {
	Profile     string `json:"profile"`
	Interactive bool   `json:"interactive"`
	// State is StateValid, StateExpired, StateAbsent or StateInvalid.
	State string `json:"state"`
	// Expiry of the access token; zero: it never expires, or there is none.
	Expiry          time.Time `json:"expiry,omitzero"`
	HasRefreshToken bool      `json:"has_refresh_token"`
	// LastError is the last failure, with the authorization server's own
	// error text; "" after a success.
	LastError string `json:"last_error,omitempty"`
	// Hint is one line on how to fix LastError, for the usual
	// misconfigurations.
	Hint        string    `json:"hint,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	// Requests to the token endpoint, and those that failed, since the
	// server started.
	Requests int64 `json:"requests"`
	Failures int64 `json:"failures"`
	// DeviceSignIn tells whether the profile can sign in with a device
	// code; Grant is its last device code sign-in.
	DeviceSignIn bool        `json:"device_sign_in,omitempty"`
	Grant        *GrantState `json:"grant,omitempty"`
}

// CanGrant tells whether the Manage Token page offers Grant New Token:
// only for interactive profiles (the seed's rule).
func (t TokenStatus) CanGrant() bool { return t.Interactive }

// CanRefresh tells whether the Manage Token page offers Refresh Token: when
// the profile is not interactive, or is interactive and holds a refresh
// token (the seed's rule).
func (t TokenStatus) CanRefresh() bool { return !t.Interactive || t.HasRefreshToken }

// tokenStatus finds profile's status; ok is false when it has none (not
// an OAuth2 profile, or no token manager).
func tokenStatus(tk Tokens, profile string) (TokenStatus, bool) {
	if tk == nil {
		return TokenStatus{}, false
	}
	for _, st := range tk.Statuses() {
		if st.Profile == profile {
			return st, true
		}
	}
	return TokenStatus{}, false
}
