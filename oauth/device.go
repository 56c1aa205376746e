package oauth

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// Device grant states, as DeviceGrant.State reports them.
const (
	DevicePending  = "pending"  // waiting for the person to sign in
	DeviceGranted  = "granted"  // tokens arrived and are stored
	DeviceDeclined = "declined" // the person declined
	DeviceExpired  = "expired"  // the code expired first
	DeviceFailed   = "failed"   // the authorization server refused
)

// deviceGrantType is RFC 8628 §3.4's grant_type.
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// defaultDeviceInterval is RFC 8628 §3.2's polling interval when the
// server names none.
const defaultDeviceInterval = 5 * time.Second

// googleMailScope is the only scope Gmail's SMTP server accepts; Google's
// device flow refuses it (invalid_scope).
const googleMailScope = "https://mail.google.com/"

// DeviceGrant is a device code sign-in (RFC 8628) of an interactive
// profile: what the person must do, and how it ended. It holds no secret
// (the device code stays inside the Manager).
type DeviceGrant struct {
	Profile                 string    `json:"profile"`
	Method                  string    `json:"method"` // "device"
	State                   string    `json:"state"`  // DevicePending, DeviceGranted, ...
	UserCode                string    `json:"user_code"`
	VerificationURI         string    `json:"verification_uri"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	Message                 string    `json:"message"`         // the instruction to show
	ExpiresIn               int       `json:"expires_in"`      // seconds, as the server sent it
	Interval                int       `json:"interval"`        // seconds between polls, as the server sent it
	Expiry                  time.Time `json:"expiry,omitzero"` // of the user code
	// Error is the authorization server's code and text when the grant
	// did not succeed, and Hint a line on what to do.
	Error string `json:"error,omitempty"`
	Hint  string `json:"hint,omitempty"`
}

// StartDevice asks the device authorization endpoint of an interactive
// profile's client for a user code (RFC 8628 §3.1) and polls the token
// endpoint in the background until the person signs in, declines, or the
// code expires. A new StartDevice for the profile ends the previous one.
// Google's device flow does not allow Gmail's scope: that is refused
// before any request.
func (m *Manager) StartDevice(ctx context.Context, profile string) (DeviceGrant, error) {
	s := m.Source(profile)
	if s == nil {
		return DeviceGrant{}, &GrantError{Profile: profile, Msg: "not an OAuth2 profile"}
	}
	s.mu.Lock()
	set, conf, gen := s.set, s.codeConf, s.gen
	s.mu.Unlock()
	switch {
	case !set.interactive:
		return DeviceGrant{}, &GrantError{Profile: profile, Msg: "the profile is not interactive and needs no sign-in; refresh its token instead"}
	case set.provider == "google" && slices.Contains(set.scopes, googleMailScope):
		return DeviceGrant{}, &GrantError{Profile: profile, Msg: "Google does not allow the Gmail scope " + googleMailScope + " in its device flow (it answers invalid_scope); use a service account with domain-wide delegation (service_account_file), or a Desktop app client and paste the address the browser ends on (relay token grant " + profile + ")"}
	case set.deviceAuthURL == "":
		return DeviceGrant{}, &GrantError{Profile: profile, Msg: "the OAuth2 client has no device authorization endpoint: set device_auth_url, or provider = \"microsoft\" with tenant"}
	}
	cred, err := set.credentialParams()
	if err != nil {
		return DeviceGrant{}, &TokenError{Profile: profile, Description: "cannot sign the client assertion", Err: err}
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	da, err := conf.DeviceAuth(s.m.withHTTP(rctx), authOptions(cred)...)
	if err != nil {
		te := classify(profile, err)
		s.grantFailed(te, "device_code")
		return DeviceGrant{}, te
	}
	g := &DeviceGrant{
		Profile:                 profile,
		Method:                  "device",
		State:                   DevicePending,
		UserCode:                da.UserCode,
		VerificationURI:         da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete,
		Interval:                int(da.Interval),
		Expiry:                  da.Expiry,
		Message:                 fmt.Sprintf("To sign in, open %s in a browser and enter the code %s.", da.VerificationURI, da.UserCode),
	}
	if !da.Expiry.IsZero() {
		g.ExpiresIn = int(time.Until(da.Expiry).Round(time.Second) / time.Second)
	}
	pctx, pcancel := context.WithCancel(m.ctx)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		pcancel()
		return DeviceGrant{}, ErrClosed
	}
	m.wg.Add(1)
	m.mu.Unlock()
	s.mu.Lock()
	if s.deviceCancel != nil {
		s.deviceCancel()
	}
	s.device, s.deviceCancel = g, pcancel
	s.broadcastLocked()
	s.mu.Unlock()
	s.log.Info("device sign-in started", "grant_type", "device_code", "verification_uri", da.VerificationURI, "expiry", expiryAttr(da.Expiry))
	go s.pollDevice(pctx, g, da.DeviceCode, gen)
	return *g, nil
}

// Device returns the profile's last device sign-in, if any.
func (s *TokenSource) Device() (DeviceGrant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.device == nil {
		return DeviceGrant{}, false
	}
	return *s.device, true
}

// pollDevice polls the token endpoint for g (RFC 8628 §3.4, §3.5): at
// the server's interval, 5 s longer after each slow_down, through
// outages of the token endpoint, until the person signs in, declines, or
// the code expires.
func (s *TokenSource) pollDevice(ctx context.Context, g *DeviceGrant, deviceCode string, gen uint64) {
	defer s.m.wg.Done()
	interval := time.Duration(g.Interval) * time.Second
	if interval <= 0 {
		interval = defaultDeviceInterval
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return // replaced by a new sign-in, or the Manager closed
		case <-t.C:
		}
		if !g.Expiry.IsZero() && time.Now().After(g.Expiry) {
			s.endDevice(g, DeviceExpired, &TokenError{Profile: s.name, NeedsAction: true, Code: "expired_token", Description: "the code expired before the sign-in completed"})
			return
		}
		ot, te := s.deviceRequest(ctx, deviceCode, gen)
		if te == nil {
			if err := s.obtained(&flight{done: make(chan struct{})}, gen, "device_code", ot); err != nil {
				s.endDevice(g, DeviceFailed, err)
				return
			}
			s.endDevice(g, DeviceGranted, nil)
			return
		}
		switch te.Code {
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second // RFC 8628 §3.5: for this and all later requests
		case "authorization_declined", "access_denied":
			s.endDevice(g, DeviceDeclined, te)
			return
		case "expired_token", "code_expired":
			s.endDevice(g, DeviceExpired, te)
			return
		default:
			if ctx.Err() != nil {
				return
			}
			if !te.Temporary {
				s.endDevice(g, DeviceFailed, te) // bad_verification_code, invalid_client, ...
				return
			}
			// The token endpoint is down: the code stays good until it
			// expires, so keep polling.
			s.log.Warn("device sign-in poll failed; polling on", append([]any{"grant_type", "device_code"}, te.logAttrs()...)...)
		}
		t.Reset(interval)
	}
}

// deviceRequest makes one device access token request (RFC 8628 §3.4).
func (s *TokenSource) deviceRequest(ctx context.Context, deviceCode string, gen uint64) (*oauth2.Token, *TokenError) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	release, te := s.acquire(ctx)
	if te != nil {
		return nil, te
	}
	defer release()
	s.mu.Lock()
	if gen != s.gen || s.closed {
		s.mu.Unlock()
		return nil, &TokenError{Profile: s.name, NeedsAction: true, Description: "the profile's settings changed during the sign-in; start it again"}
	}
	set, conf := s.set, s.ccConf
	s.requests++
	s.mu.Unlock()
	params := url.Values{"grant_type": {deviceGrantType}, "device_code": {deviceCode}}
	ot, err := s.tokenRequest(ctx, conf, &set, nil, params)
	if err != nil {
		return nil, classify(s.name, err)
	}
	return ot, nil
}

// endDevice records how g ended; a failure is the profile's last error,
// recorded first, so that whoever sees the state sees the error too.
func (s *TokenSource) endDevice(g *DeviceGrant, state string, te *TokenError) {
	if te != nil {
		s.grantFailed(te, "device_code")
	} else {
		s.log.Info("device sign-in completed", "grant_type", "device_code")
	}
	s.mu.Lock()
	g.State = state
	if te != nil {
		g.Error, g.Hint = te.Reason(), te.Hint()
	}
	s.broadcastLocked()
	s.mu.Unlock()
}
