package oauth

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"
)

// retryInvalidAfter is how long a source in the "invalid" state refuses
// to ask the token endpoint again on its own; Refresh, a grant or a
// configuration change try at once.
const retryInvalidAfter = 5 * time.Minute

// Backoff after a temporary failure, so that waiting callers do not hammer
// an endpoint that is down.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// TokenSource hands out one profile's access token. Its methods are safe
// for concurrent use.
type TokenSource struct {
	m    *Manager
	name string
	log  *slog.Logger

	// sem serializes requests to the token endpoint, refreshes and
	// grants alike, so that a refresh token is used by one request at a
	// time and a grant's tokens are not overwritten by a refresh that
	// started before it.
	sem chan struct{}
	// saveMu serializes writes to the store; each write holds the state
	// current when it took the lock.
	saveMu sync.Mutex

	mu       sync.Mutex
	set      settings
	ccConf   *clientcredentials.Config // client credentials, refresh and device code requests
	codeConf *oauth2.Config            // authorization URL and code exchange
	saConf   *jwt.Config               // a service account's JWT bearer grant, or nil
	gen      uint64                    // changes when settings change: results from before are dropped
	tok      tokens
	flight   *flight
	changed  chan struct{} // closed and replaced at every change of state

	lastErr     *TokenError
	lastErrText string
	lastErrAt   time.Time
	needsAction bool
	lastRefresh time.Time
	backoff     time.Duration
	nextAttempt time.Time // real time; no automatic request before it
	requests    int64
	failures    int64
	timer       *time.Timer
	closed      bool

	device       *DeviceGrant       // the last device sign-in, or nil
	deviceCancel context.CancelFunc // ends its polling
}

type tokens struct {
	access, typ, refresh string
	expiry, obtained     time.Time
}

// flight is one request to the token endpoint, shared by every caller
// that waits for it.
type flight struct {
	done chan struct{}
	err  *TokenError // set before done closes
}

func newTokenSource(m *Manager, set settings) *TokenSource {
	s := &TokenSource{
		m:       m,
		name:    set.profile,
		log:     m.log.With("profile", set.profile),
		sem:     make(chan struct{}, 1),
		changed: make(chan struct{}),
	}
	s.setSettingsLocked(set)
	return s
}

func (s *TokenSource) setSettingsLocked(set settings) {
	s.set = set
	// A client without a secret authenticates in the body: a client
	// assertion, or client_id alone for a public client. Auto-detection
	// would first send an Authorization header with an empty secret.
	style := oauth2.AuthStyleAutoDetect
	if set.clientSecret == "" {
		style = oauth2.AuthStyleInParams
	}
	s.ccConf = &clientcredentials.Config{
		ClientID:     set.clientID,
		ClientSecret: set.clientSecret,
		TokenURL:     set.tokenURL,
		AuthStyle:    style,
	}
	s.codeConf = &oauth2.Config{
		ClientID:     set.clientID,
		ClientSecret: set.clientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: set.authURL, TokenURL: set.tokenURL, DeviceAuthURL: set.deviceAuthURL, AuthStyle: style},
		RedirectURL:  set.redirectURL,
		Scopes:       set.scopes,
	}
	s.saConf = nil
	if set.sa != nil {
		conf, err := serviceAccountConfig(set.sa, set.username, set.tokenURL, set.scopes)
		if err != nil {
			s.log.Error("cannot use the service account key", "error", err)
		}
		s.saConf = conf
	}
}

// load takes the persisted record, if it was issued for these settings.
func (s *TokenSource) load() {
	s.mu.Lock()
	gen, fp := s.gen, s.set.fingerprint
	s.mu.Unlock()
	rec, err := s.m.store.Load(s.m.ctx, s.name)
	if err != nil {
		s.log.Error("cannot load the persisted tokens; starting without them", "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec == nil || gen != s.gen {
		s.scheduleLocked()
		return
	}
	s.lastErrText, s.lastErrAt = rec.LastError, rec.LastErrorAt
	s.lastRefresh = rec.LastRefresh
	if rec.Fingerprint != fp {
		s.log.Warn("persisted tokens were issued for other settings (flow, client, token URL or scope); not using them")
		s.scheduleLocked()
		return
	}
	s.tok = tokens{
		access:   rec.AccessToken,
		typ:      rec.TokenType,
		refresh:  rec.RefreshToken,
		expiry:   rec.Expiry,
		obtained: rec.Obtained,
	}
	s.log.Info("loaded persisted tokens", "access_token", rec.AccessToken != "", "expiry", expiryAttr(rec.Expiry), "refresh_token", rec.RefreshToken != "")
	s.scheduleLocked()
}

// update takes changed settings from a configuration reload.
func (s *TokenSource) update(set settings) {
	s.mu.Lock()
	if reflect.DeepEqual(s.set, set) {
		s.mu.Unlock()
		return
	}
	reissue := s.set.fingerprint != set.fingerprint
	s.gen++
	s.setSettingsLocked(set)
	s.needsAction = false
	s.backoff, s.nextAttempt = 0, time.Time{}
	if reissue {
		s.tok = tokens{}
		s.lastErr, s.lastErrText, s.lastErrAt = nil, "", time.Time{}
	}
	s.broadcastLocked()
	s.scheduleLocked()
	s.mu.Unlock()
	if reissue {
		s.log.Info("profile settings changed; tokens issued for the old settings are not used")
		s.load()
	} else {
		s.log.Info("profile settings changed")
	}
}

func (s *TokenSource) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.deviceCancel != nil {
		s.deviceCancel()
	}
	s.broadcastLocked()
}

func (s *TokenSource) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next change of the
// source's state: a token arrived, a request failed, a grant completed,
// the settings changed. Pages and `relay token grant` wait on it.
func (s *TokenSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Profile returns the profile's name.
func (s *TokenSource) Profile() string { return s.name }

func (s *TokenSource) validLocked(now time.Time) bool {
	return s.tok.access != "" && (s.tok.expiry.IsZero() || now.Before(s.tok.expiry))
}

// refreshBeforeLocked is refresh_before_expiration, at most half of the
// token's lifetime: a window as long as the lifetime would renew the token
// at every call.
func (s *TokenSource) refreshBeforeLocked() time.Duration {
	rb := s.set.refreshBefore
	if rb <= 0 {
		return 0 // seed: <= 0 renews exactly at expiry
	}
	if !s.tok.obtained.IsZero() && !s.tok.expiry.IsZero() {
		if half := s.tok.expiry.Sub(s.tok.obtained) / 2; rb > half {
			rb = half
		}
	}
	return rb
}

// inWindowLocked reports whether the access token is due for renewal.
func (s *TokenSource) inWindowLocked(now time.Time) bool {
	if s.tok.expiry.IsZero() {
		return false
	}
	return !now.Before(s.tok.expiry.Add(-s.refreshBeforeLocked()))
}

// blockedLocked returns why no request may be made on the caller's behalf
// now, or nil.
func (s *TokenSource) blockedLocked(now time.Time) *TokenError {
	if s.set.interactive && s.tok.refresh == "" {
		if s.lastErr != nil && s.lastErr.NeedsAction {
			return s.lastErr
		}
		return &TokenError{Profile: s.name, NeedsAction: true,
			Description: "no refresh token: grant a new token (relay token grant " + s.name + ")"}
	}
	if s.needsAction && s.lastErr != nil && now.Before(s.lastErrAt.Add(retryInvalidAfter)) {
		return s.lastErr
	}
	return nil
}

// startLocked starts a request unless one is in flight, or the backoff
// after a temporary failure holds automatic ones back.
func (s *TokenSource) startLocked(manual bool) *flight {
	if s.flight != nil {
		return s.flight
	}
	if s.closed || (!manual && time.Now().Before(s.nextAttempt)) {
		return nil
	}
	f := &flight{done: make(chan struct{})}
	s.flight = f
	s.m.wg.Add(1)
	go s.run(f, manual)
	return f
}

// Token returns a valid access token. Without one it waits, at most
// access_token_timeout, for the request in flight (one per profile however
// many callers wait) or starts it; with access_token_timeout <= 0 it fails
// at once. A token inside its refresh window is returned while the renewal
// runs in the background. Errors are *TokenError: Temporary when waiting
// longer may help, NeedsAction when a person must act.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	timeout := s.set.timeout
	s.mu.Unlock()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return "", &TokenError{Profile: s.name, Temporary: true, Err: ErrClosed}
		}
		now := s.m.now()
		if s.validLocked(now) {
			tok := s.tok.access
			if s.inWindowLocked(now) && s.blockedLocked(now) == nil {
				s.startLocked(false) // refresh ahead; this caller does not wait
			}
			s.mu.Unlock()
			return tok, nil
		}
		if err := s.blockedLocked(now); err != nil {
			s.mu.Unlock()
			return "", err
		}
		f := s.startLocked(false)
		changed := s.changed
		var wait time.Duration
		if f == nil {
			wait = time.Until(s.nextAttempt)
		}
		last := s.lastErr
		s.mu.Unlock()

		if timeout <= 0 {
			return "", s.waitError(last, "no valid access token and access_token_timeout <= 0 (fail fast)")
		}
		var retry <-chan time.Time
		var rt *time.Timer
		if f == nil && wait > 0 {
			rt = time.NewTimer(wait)
			retry = rt.C
		}
		var err error
		select {
		case <-changed:
		case <-retry:
		case <-deadline:
			err = s.waitError(s.lastError(), fmt.Sprintf("no valid access token within access_token_timeout (%v)", timeout))
		case <-ctx.Done():
			err = &TokenError{Profile: s.name, Temporary: true, Err: ctx.Err()}
		}
		if rt != nil {
			rt.Stop()
		}
		if err != nil {
			return "", err
		}
	}
}

func (s *TokenSource) lastError() *TokenError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// waitError is the Temporary error of a caller that gave up waiting,
// with the last failure as its cause.
func (s *TokenSource) waitError(last *TokenError, msg string) *TokenError {
	te := &TokenError{Profile: s.name, Temporary: true, Description: msg}
	if last != nil {
		te.Description += "; last error: " + last.Reason()
		te.Err = last
	} else {
		te.Err = ErrNoToken
	}
	return te
}

// Invalidate drops the access token if it is still the current one: the
// upstream refused it. The refresh token stays. The next Token call fetches
// a new access token.
func (s *TokenSource) Invalidate(token string) {
	s.mu.Lock()
	if token == "" || s.tok.access != token {
		s.mu.Unlock()
		return
	}
	s.tok.access, s.tok.typ = "", ""
	s.tok.expiry, s.tok.obtained = time.Time{}, time.Time{}
	s.log.Info("access token refused upstream; dropped it", "refresh_token", s.tok.refresh != "")
	s.broadcastLocked()
	s.scheduleLocked()
	s.mu.Unlock()
	s.persist()
}

// Refresh obtains a new access token now, with client credentials or the
// refresh token, whatever the current token's state, and waits for it (or
// for the request already in flight). It is the manage-token page's
// "Refresh Token" and `relay token refresh`.
func (s *TokenSource) Refresh(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &TokenError{Profile: s.name, Temporary: true, Err: ErrClosed}
	}
	if s.set.interactive && s.tok.refresh == "" {
		err := s.blockedLocked(s.m.now())
		s.mu.Unlock()
		return err
	}
	f := s.startLocked(true)
	s.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return f.err
		}
		return nil
	case <-ctx.Done():
		return &TokenError{Profile: s.name, Temporary: true, Err: ctx.Err()}
	}
}
