package oauth

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"golang.org/x/oauth2"
)

// run performs one request to the token endpoint for flight f.
func (s *TokenSource) run(f *flight, manual bool) {
	defer s.m.wg.Done()
	ctx, cancel := context.WithTimeout(s.m.ctx, requestTimeout)
	defer cancel()
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		s.finish(f, &TokenError{Profile: s.name, Temporary: true, Err: ctx.Err()})
		return
	}

	s.mu.Lock()
	now := s.m.now()
	if !manual && s.validLocked(now) && !s.inWindowLocked(now) {
		// A grant or a manual refresh landed while this waited.
		s.mu.Unlock()
		s.finish(f, nil)
		return
	}
	set, gen, refresh := s.set, s.gen, s.tok.refresh
	grant := set.grantType(refresh != "")
	if grant == "authorization_code" {
		err := s.blockedLocked(now)
		s.mu.Unlock()
		s.finish(f, err)
		return
	}
	conf, saConf := s.ccConf, s.saConf
	s.requests++
	s.mu.Unlock()

	var ot *oauth2.Token
	var err error
	switch grant {
	case "jwt_bearer":
		if saConf == nil {
			err = fmt.Errorf("the service account key of profile %q cannot be used", s.name)
			break
		}
		ot, err = saConf.TokenSource(s.m.withHTTP(ctx)).Token()
	case "refresh_token":
		params := url.Values{}
		for k, v := range set.refreshParams {
			params[k] = v
		}
		// clientcredentials lets grant_type be overridden, which turns
		// its request into RFC 6749 §6's refresh request; an omitted
		// scope means the scope granted.
		params.Set("grant_type", "refresh_token")
		params.Set("refresh_token", refresh)
		ot, err = s.tokenRequest(ctx, conf, &set, nil, params)
	default:
		ot, err = s.tokenRequest(ctx, conf, &set, set.scopes, set.ccParams)
	}
	if err != nil {
		s.failed(f, gen, grant, classify(s.name, err))
		return
	}
	s.obtained(f, gen, grant, ot)
}

// obtained installs a new token: persisted first, so that a rotated refresh
// token is on disk before anyone uses the tokens it came with.
func (s *TokenSource) obtained(f *flight, gen uint64, grant string, ot *oauth2.Token) *TokenError {
	now := s.m.now()
	s.mu.Lock()
	if gen != s.gen || s.closed {
		s.mu.Unlock()
		s.log.Info("settings changed during the token request; result dropped", "grant_type", grant)
		err := &TokenError{Profile: s.name, Temporary: true, Description: "profile settings changed during the token request"}
		s.finish(f, err)
		return err
	}
	t := tokens{
		access:   ot.AccessToken,
		typ:      ot.TokenType,
		refresh:  ot.RefreshToken, // x/oauth2 keeps the old one when none came back
		expiry:   expiryOf(ot, s.set.defaultExpiration, now),
		obtained: now,
	}
	if !s.set.interactive {
		t.refresh = "" // not used by these flows
	}
	rotated := s.tok.refresh != "" && t.refresh != s.tok.refresh
	rec := s.recordLocked()
	s.mu.Unlock()

	rec.AccessToken, rec.TokenType, rec.RefreshToken = t.access, t.typ, t.refresh
	rec.Expiry, rec.Obtained, rec.LastRefresh = t.expiry, t.obtained, now
	rec.LastError, rec.LastErrorAt = "", time.Time{}
	s.saveMu.Lock()
	saveErr := s.m.store.Save(s.m.ctx, rec)
	s.mu.Lock()
	installed := gen == s.gen && !s.closed
	if installed {
		s.tok = t
		s.lastRefresh = now
		s.lastErr, s.lastErrText, s.lastErrAt = nil, "", time.Time{}
		s.needsAction = false
		s.backoff, s.nextAttempt = 0, time.Time{}
	}
	s.mu.Unlock()
	s.saveMu.Unlock()

	if saveErr != nil {
		// The tokens work; only a restart would lose them.
		s.log.Error("cannot persist tokens", "grant_type", grant, "error", saveErr)
	}
	if !installed {
		err := &TokenError{Profile: s.name, Temporary: true, Description: "profile settings changed during the token request"}
		s.finish(f, err)
		return err
	}
	s.log.Info("access token obtained", "grant_type", grant, "expiry", expiryAttr(t.expiry),
		"refresh_token", t.refresh != "", "refresh_token_rotated", rotated)
	s.finish(f, nil)
	if saveErr != nil {
		return &TokenError{Profile: s.name, Description: "tokens obtained but not saved", Err: saveErr}
	}
	return nil
}

// failed records a failed request. Temporary failures back off and keep
// every token; invalid_grant on a refresh drops the refresh token, which
// the server has just declared dead.
func (s *TokenSource) failed(f *flight, gen uint64, grant string, te *TokenError) {
	now := s.m.now()
	s.mu.Lock()
	current := gen == s.gen && !s.closed
	dropped := false
	if current {
		s.failures++
		s.lastErr, s.lastErrText, s.lastErrAt = te, te.Reason(), now
		if te.NeedsAction {
			s.needsAction = true
		}
		if te.Temporary {
			s.backoff = min(max(2*s.backoff, minBackoff), maxBackoff)
			s.nextAttempt = time.Now().Add(s.backoff)
		}
		if grant == "refresh_token" && te.Code == "invalid_grant" && s.tok.refresh != "" {
			s.tok.refresh = ""
			dropped = true
		}
	}
	s.mu.Unlock()
	attrs := append([]any{"grant_type", grant}, te.logAttrs()...)
	if te.NeedsAction {
		s.log.Error("token request refused", attrs...)
	} else {
		s.log.Warn("token request failed", attrs...)
	}
	if dropped {
		s.log.Warn("refresh token dropped after invalid_grant; a new grant is needed", "grant_type", grant)
	}
	if current {
		s.persist()
	}
	s.finish(f, te)
}

// finish ends flight f with err and wakes its waiters.
func (s *TokenSource) finish(f *flight, err *TokenError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.err = err
	if s.flight == f {
		s.flight = nil
	}
	close(f.done)
	s.broadcastLocked()
	s.scheduleLocked()
}

// recordLocked is the source's state as a store record.
func (s *TokenSource) recordLocked() *Record {
	return &Record{
		Profile:      s.name,
		Fingerprint:  s.set.fingerprint,
		AccessToken:  s.tok.access,
		TokenType:    s.tok.typ,
		Expiry:       s.tok.expiry,
		Obtained:     s.tok.obtained,
		RefreshToken: s.tok.refresh,
		LastRefresh:  s.lastRefresh,
		LastError:    s.lastErrText,
		LastErrorAt:  s.lastErrAt,
	}
}

// persist writes the current state to the store.
func (s *TokenSource) persist() {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	rec := s.recordLocked()
	s.mu.Unlock()
	if err := s.m.store.Save(s.m.ctx, rec); err != nil {
		s.log.Error("cannot persist token state", "error", err)
	}
}

// scheduleLocked arms the background renewal (Options.RefreshAhead) for
// when the token enters its refresh window, or when the backoff ends.
func (s *TokenSource) scheduleLocked() {
	if !s.m.ahead || s.closed {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.needsAction || s.tok.expiry.IsZero() && s.tok.access != "" {
		return // a person must act, or the token never expires
	}
	var d time.Duration
	switch {
	case s.tok.access != "":
		d = s.tok.expiry.Add(-s.refreshBeforeLocked()).Sub(s.m.now())
	case s.set.interactive && s.tok.refresh != "":
		d = 0 // dropped or expired access token: renew now
	default:
		return // fetched when a caller asks
	}
	if w := time.Until(s.nextAttempt); w > d {
		d = w
	}
	// Never sooner than a second: a server that hands out tokens already
	// due for renewal must not get a request loop.
	s.timer = time.AfterFunc(max(d, minBackoff), s.onTimer)
}

func (s *TokenSource) onTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.flight != nil {
		return // the flight reschedules when it ends
	}
	now := s.m.now()
	due := s.tok.access == "" || s.inWindowLocked(now)
	if !due || time.Now().Before(s.nextAttempt) || s.blockedLocked(now) != nil {
		// Not yet (an injected clock runs at its own pace): look again
		// later, never in a busy loop.
		d := time.Second
		if !s.tok.expiry.IsZero() {
			d = max(d, s.tok.expiry.Add(-s.refreshBeforeLocked()).Sub(now))
		}
		if s.blockedLocked(now) == nil {
			s.timer = time.AfterFunc(d, s.onTimer)
		}
		return
	}
	s.startLocked(false)
}
