package relay

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// authThrottle slows down password guessing: each failed login from a
// client address makes the next attempts from that address wait longer
// (0, 1, 2, 4 … s up to a cap, as Dovecot's auth penalty), and a success
// forgets the address.
//
// The wait is served twice. The failing attempt's reply is held until the
// penalty has passed, so an honest client that retries after the reply
// finds no wait left and its correct password is answered at once. And an
// attempt that starts before the penalty of an earlier failure has passed
// waits for it before the password is even checked, so that a client
// cannot learn the verdict early by hanging up and reconnecting, nor guess
// in parallel: failures on several connections add up.
//
// IPv6 clients are counted by /64, the usual size of one site's network.
// Memory is bounded: at most Limits.AuthClients addresses are remembered,
// the least recently failed forgotten first, and an address is forgotten
// Limits.AuthForget after its last failure.
type authThrottle struct {
	limits Limits
	now    func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]*list.Element // of *throttleEntry
	lru     list.List                      // most recently failed first
}

type throttleEntry struct {
	key      netip.Prefix
	failures int
	last     time.Time // of the last failure
	until    time.Time // no attempt is checked before this
}

func newAuthThrottle(l Limits, now func() time.Time) *authThrottle {
	return &authThrottle{limits: l, now: now, entries: make(map[netip.Prefix]*list.Element)}
}

func throttleKey(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := addr.BitLen()
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// delay is the penalty of the n-th failure in a row.
func (t *authThrottle) delay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := t.limits.AuthDelay
	for i := 2; i < n && d < t.limits.AuthMaxDelay; i++ {
		d *= 2
	}
	return min(d, t.limits.AuthMaxDelay)
}

// entry returns addr's entry, or nil; expired entries are dropped. t.mu is
// held.
func (t *authThrottle) entry(key netip.Prefix, now time.Time) *throttleEntry {
	el := t.entries[key]
	if el == nil {
		return nil
	}
	e := el.Value.(*throttleEntry)
	if now.Sub(e.last) > t.limits.AuthForget && !now.Before(e.until) {
		t.lru.Remove(el)
		delete(t.entries, key)
		return nil
	}
	return e
}

// before says how long an attempt from addr must wait before its
// credentials are checked, and whether it is refused outright because
// failures on other connections have pushed the wait past the cap.
func (t *authThrottle) before(addr netip.Addr) (wait time.Duration, refuse bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.entry(throttleKey(addr), now)
	if e == nil {
		return 0, false
	}
	wait = e.until.Sub(now)
	if wait > t.limits.AuthMaxDelay {
		return 0, true
	}
	return max(wait, 0), false
}

// failed records a failure from addr and returns how many there were in a
// row and how long to hold this attempt's reply.
func (t *authThrottle) failed(addr netip.Addr) (failures int, hold time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	key := throttleKey(addr)
	e := t.entry(key, now)
	if e == nil {
		for t.lru.Len() >= t.limits.AuthClients {
			old := t.lru.Back()
			t.lru.Remove(old)
			delete(t.entries, old.Value.(*throttleEntry).key)
		}
		e = &throttleEntry{key: key}
		t.entries[key] = t.lru.PushFront(e)
	} else {
		t.lru.MoveToFront(t.entries[key])
	}
	e.failures++
	e.last = now
	start := now
	if e.until.After(now) {
		start = e.until // failures on other connections add up
	}
	e.until = start.Add(t.delay(e.failures))
	return e.failures, min(e.until.Sub(now), t.limits.AuthMaxDelay)
}

// succeeded forgets addr's failures.
func (t *authThrottle) succeeded(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := throttleKey(addr)
	if el := t.entries[key]; el != nil {
		t.lru.Remove(el)
		delete(t.entries, key)
	}
}

// errTooManyFailures: RFC 4954 §6, 454 4.7.0 temporary authentication
// failure.
var errTooManyFailures = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins from your address, try again later"}

// throttled wraps a credentials check with the AUTH throttle of the
// client's address, and logs each failure with the address (the session
// logger's "client"), the user name and the count, never the password.
func (s *session) throttled(mech string, check func(name, password string) error) func(name, password string) error {
	t := s.srv.throttle
	return func(name, password string) error {
		wait, refuse := t.before(s.remote)
		if refuse {
			s.logger.Warn("authentication refused: too many failures from this address", "user", name, "mechanism", mech, "reply", replyString(errTooManyFailures))
			s.expectRefusal()
			return errTooManyFailures
		}
		if err := s.srv.opts.Sleep(s.ctx, wait); err != nil {
			return s.reply(err).reply
		}
		err := check(name, password)
		if err == nil {
			t.succeeded(s.remote)
			return nil
		}
		failures, hold := t.failed(s.remote)
		s.logger.Warn("authentication failed", "user", name, "mechanism", mech, "failures", failures, "delay", hold, "reply", replyString(s.reply(err).reply))
		s.expectRefusal()
		if serr := s.srv.opts.Sleep(s.ctx, hold); serr != nil {
			return s.reply(serr).reply
		}
		return err
	}
}

// saslError makes every error of a SASL exchange an *smtp.SMTPError: go-smtp
// would answer any other with 454 4.7.0 and the error's text. A response
// that does not parse (a PLAIN message without its two NULs, a response
// after the end) is a syntax error (RFC 4954 §4: 501 5.5.2).
type saslError struct {
	s    *session
	next func([]byte) ([]byte, bool, error)
}

func (s saslError) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.next(response)
	if err != nil {
		if _, ok := err.(*smtp.SMTPError); !ok {
			// Logged here; a refused password is logged by throttled.
			err = s.s.answer("AUTH", &refusal{reply: &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed authentication response"}, cause: err})
		}
	}
	return challenge, done, err
}
