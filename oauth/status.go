package oauth

import (
	"encoding/json"
	"strconv"
	"time"

	"golang.org/x/oauth2"
)

// Token states, as Status.State reports them.
const (
	StateValid   = "valid"   // an access token that has not expired
	StateExpired = "expired" // the access token expired; it is renewed without help
	StateAbsent  = "absent"  // no access token yet; one is fetched without help
	StateInvalid = "invalid" // needs action: a grant, or a configuration fix
)

// Status is the state of one OAuth2 profile's tokens, for `relay token
// status`, the admin pages and API (whose JSON it is) and metrics. It holds
// no secret: whether a refresh token is held, never the token.
type Status struct {
	Profile     string `json:"profile"`
	Interactive bool   `json:"interactive"`
	// State is StateValid, StateExpired, StateAbsent or StateInvalid.
	State string `json:"state"`
	// Expiry of the access token; zero: it never expires, or there is none.
	Expiry time.Time `json:"expiry,omitzero"`
	// HasRefreshToken tells whether an interactive profile can renew its
	// access token without a new grant.
	HasRefreshToken bool `json:"has_refresh_token"`
	// LastError is the last failure: the authorization server's own error
	// and description ("invalid_grant: Token has been expired or
	// revoked."), or the network trouble. Cleared by a success.
	LastError string `json:"last_error,omitempty"`
	// Hint is one line on how to fix LastError, for the usual
	// misconfigurations; "" when there is none.
	Hint        string    `json:"hint,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastRefresh time.Time `json:"last_refresh,omitzero"` // when the last access token arrived
	// Token requests made to the authorization server, and those that
	// failed, since the Manager started.
	Requests int64 `json:"requests"`
	Failures int64 `json:"failures"`
	// DeviceSignIn tells whether the profile can sign in with a device
	// code: interactive, with a device authorization endpoint.
	DeviceSignIn bool `json:"device_sign_in,omitempty"`
	// Device is the last device code sign-in, or nil.
	Device *DeviceGrant `json:"grant,omitempty"`
}

// CanGrant tells whether a person can start a new grant (the Manage Token
// page's Grant New Token): only for interactive profiles.
func (st Status) CanGrant() bool { return st.Interactive }

// CanRefresh tells whether a refresh can work now (the Manage Token page's
// Refresh Token): when the profile is not interactive, or is interactive
// and holds a refresh token.
func (st Status) CanRefresh() bool { return !st.Interactive || st.HasRefreshToken }

// Status reports the profile's token state.
func (s *TokenSource) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.m.now()
	st := Status{
		Profile:         s.name,
		Interactive:     s.set.interactive,
		HasRefreshToken: s.tok.refresh != "",
		LastError:       s.lastErrText,
		Hint:            ErrorHint(s.lastErrText),
		DeviceSignIn:    s.set.interactive && s.set.deviceAuthURL != "",
		LastErrorAt:     s.lastErrAt,
		LastRefresh:     s.lastRefresh,
		Requests:        s.requests,
		Failures:        s.failures,
	}
	if s.tok.access != "" {
		st.Expiry = s.tok.expiry
	}
	if s.device != nil {
		d := *s.device
		st.Device = &d
	}
	switch {
	case s.needsAction:
		st.State = StateInvalid
	case s.validLocked(now):
		st.State = StateValid
	case s.set.interactive && s.tok.refresh == "":
		st.State = StateInvalid
	case s.tok.access != "":
		st.State = StateExpired
	default:
		st.State = StateAbsent
	}
	return st
}

// expiryOf is when ot expires by the injected clock: now + expires_in, or
// default_access_token_expiration when the server gave none (<= 0: never).
func expiryOf(ot *oauth2.Token, def time.Duration, now time.Time) time.Time {
	if d, ok := expiresIn(ot); ok {
		return now.Add(d)
	}
	if def > 0 {
		return now.Add(def)
	}
	return time.Time{}
}

// expiresIn reads the token response's expires_in (RFC 6749 §5.1). x/oauth2
// turns it into an Expiry by the real clock; read the field itself so that
// the injected clock decides.
func expiresIn(ot *oauth2.Token) (time.Duration, bool) {
	var secs int64
	switch v := ot.Extra("expires_in").(type) {
	case float64: // JSON
		secs = int64(v)
	case int64: // form-encoded, as x/oauth2 parses it
		secs = v
	case json.Number:
		secs, _ = v.Int64()
	case string:
		secs, _ = strconv.ParseInt(v, 10, 64)
	}
	if secs <= 0 {
		secs = ot.ExpiresIn
	}
	if secs > 0 {
		return time.Duration(secs) * time.Second, true
	}
	if !ot.Expiry.IsZero() {
		return max(time.Until(ot.Expiry).Round(time.Second), 0), true
	}
	return 0, false
}

func expiryAttr(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
