package relay

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func testThrottle(l Limits) (*authThrottle, *fakeClock) {
	clock := newFakeClock()
	return newAuthThrottle(l.withDefaults(), clock.Now), clock
}

// TestThrottleSchedule: a client that waits for each reply is delayed 0,
// 1, 2, 4 … s up to the cap, and never before its attempts are checked.
func TestThrottleSchedule(t *testing.T) {
	th, clock := testThrottle(Limits{})
	addr := netip.MustParseAddr("192.0.2.7")
	var holds []time.Duration
	for i := 0; i < 8; i++ {
		if wait, refuse := th.before(addr); wait != 0 || refuse {
			t.Fatalf("attempt %d: before() = %v, %v; want no wait for a client that waited for its reply", i+1, wait, refuse)
		}
		n, hold := th.failed(addr)
		if n != i+1 {
			t.Fatalf("failure %d counted as %d", i+1, n)
		}
		holds = append(holds, hold)
		clock.Advance(hold)
	}
	want := []time.Duration{0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 16 * time.Second, 16 * time.Second}
	if !slices.Equal(holds, want) {
		t.Fatalf("holds = %v; want %v", holds, want)
	}
	// A success forgets the address: the next failure is not delayed.
	th.succeeded(addr)
	if _, hold := th.failed(addr); hold != 0 {
		t.Fatalf("first failure after a success held %v; want 0", hold)
	}
}

// TestThrottleHangUpAndParallel: a client that does not wait for the
// reply of a failure, or guesses on several connections at once, waits
// before its next attempt is checked, and is refused once the waits add
// up past the cap.
func TestThrottleHangUpAndParallel(t *testing.T) {
	th, clock := testThrottle(Limits{})
	addr := netip.MustParseAddr("192.0.2.7")
	th.failed(addr)
	th.failed(addr) // hold 1 s, but the client hangs up at once
	if wait, refuse := th.before(addr); wait != time.Second || refuse {
		t.Fatalf("before() after hanging up = %v, %v; want to wait 1s", wait, refuse)
	}
	// Five guesses on five connections at the same instant add up.
	var holds []time.Duration
	for i := 0; i < 5; i++ {
		_, hold := th.failed(addr)
		holds = append(holds, hold)
	}
	// until: 1 s + 2 + 4 + 8 + 16 + 16 = 47 s from now; holds are capped.
	if want := []time.Duration{3 * time.Second, 7 * time.Second, 15 * time.Second, 16 * time.Second, 16 * time.Second}; !slices.Equal(holds, want) {
		t.Fatalf("parallel holds = %v; want %v", holds, want)
	}
	if _, refuse := th.before(addr); !refuse {
		t.Fatalf("before() with 47 s of penalty pending does not refuse")
	}
	clock.Advance(40 * time.Second)
	if wait, refuse := th.before(addr); wait != 7*time.Second || refuse {
		t.Fatalf("before() 40 s later = %v, %v; want to wait 7s", wait, refuse)
	}
}

func TestThrottleKeys(t *testing.T) {
	th, _ := testThrottle(Limits{})
	th.failed(netip.MustParseAddr("2001:db8:1:2::1"))
	th.failed(netip.MustParseAddr("2001:db8:1:2:ffff::9")) // same /64
	th.failed(netip.MustParseAddr("10.0.0.1"))
	th.failed(netip.MustParseAddr("::ffff:10.0.0.1")) // the same IPv4 address
	// At one instant the penalties add up: 0 + 1 s + 2 s.
	if _, hold := th.failed(netip.MustParseAddr("2001:db8:1:2::77")); hold != 3*time.Second {
		t.Errorf("third failure in one /64 held %v; want 3s", hold)
	}
	if _, hold := th.failed(netip.MustParseAddr("10.0.0.1")); hold != 3*time.Second {
		t.Errorf("third failure from 10.0.0.1 (once IPv4-mapped) held %v; want 3s", hold)
	}
	if _, hold := th.failed(netip.MustParseAddr("2001:db8:1:3::1")); hold != 0 {
		t.Errorf("failure from another /64 held %v; want 0", hold)
	}
	if _, hold := th.failed(netip.MustParseAddr("10.0.0.2")); hold != 0 {
		t.Errorf("failure from another IPv4 address held %v; want 0", hold)
	}
}

// TestThrottleMemoryIsBounded: at most AuthClients addresses are
// remembered, and each only for AuthForget after its last failure.
func TestThrottleMemoryIsBounded(t *testing.T) {
	th, clock := testThrottle(Limits{AuthClients: 100, AuthForget: time.Minute})
	for i := 0; i < 10_000; i++ {
		th.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		// One goroutine: the fields are read without th.mu.
		if n, m := th.lru.Len(), len(th.entries); n > 100 || n != m {
			t.Fatalf("%d addresses remembered in the LRU list and %d in the map; want the same, at most 100", n, m)
		}
	}
	// The most recent ones are kept, the oldest forgotten.
	recent := netip.AddrFrom4([4]byte{10, 0, byte(9999 >> 8), byte(9999 & 0xff)})
	if _, hold := th.failed(recent); hold != time.Second {
		t.Errorf("second failure of a recent address held %v; want 1s", hold)
	}
	if _, hold := th.failed(netip.AddrFrom4([4]byte{10, 0, 0, 0})); hold != 0 {
		t.Errorf("the oldest address was not forgotten (held %v)", hold)
	}
	clock.Advance(2 * time.Minute)
	if _, hold := th.failed(recent); hold != 0 {
		t.Errorf("failures were not forgotten after AuthForget (held %v)", hold)
	}
}

func throttleConfig(t *testing.T) string {
	return fmt.Sprintf(`
[server]
data_dir = %q
allow_unauthenticated = []

[[users]]
name = "scada"
password_hash = %q
profile = "local"

[[profiles]]
name = "local"
kind = "maildir"
path = %q
`, t.TempDir(), hash(t, "scada-pw"), filepath.Join(t.TempDir(), "md"))
}

// TestAuthThrottleInSessions: through the server, repeated failures from
// one address are delayed progressively and logged with the address and
// user name, never the password; a correct password is answered without
// delay and resets the count; a malformed response is a 501, not a
// failure.
func TestAuthThrottleInSessions(t *testing.T) {
	clock := newFakeClock()
	h := startHarness(t, throttleConfig(t), clock.options())
	c := dial(t, h.addr)
	c.ehlo()
	for i := 0; i < 4; i++ {
		if code, last := c.authPlain("scada", fmt.Sprintf("guess-%d", i)); code != 535 || !strings.HasPrefix(last, "535 5.7.8 ") {
			t.Fatalf("wrong password → %q; want 535 5.7.8", last)
		}
	}
	c.must("AUTH LOGIN", 334, "")
	c.must(base64.StdEncoding.EncodeToString([]byte("nobody")), 334, "")
	c.must(base64.StdEncoding.EncodeToString([]byte("guess-login")), 535, "5.7.8")
	if got, want := clock.Sleeps(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("failures slept %v; want %v", got, want)
	}
	// RFC 4954 §4: a response that does not parse is a 501 5.5.2; it
	// checks no password, so it is not a failure.
	c.must("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("no-nul-bytes")), 501, "5.5.2")
	if got := clock.Sleeps(); len(got) != 0 {
		t.Fatalf("a malformed response slept %v", got)
	}
	if code, last := c.authPlain("scada", "scada-pw"); code != 235 {
		t.Fatalf("correct password → %q", last)
	}
	if got := clock.Sleeps(); len(got) != 0 {
		t.Fatalf("a correct password after failures slept %v; want no delay", got)
	}
	// The count was reset: the next failure, on a new connection, is not
	// delayed.
	c2 := dial(t, h.addr)
	c2.ehlo()
	c2.authPlain("scada", "typo")
	if got := clock.Sleeps(); len(got) != 0 {
		t.Fatalf("first failure after a success slept %v", got)
	}

	logs := h.logs.String()
	var failures []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "authentication failed") {
			failures = append(failures, line)
			if !strings.Contains(line, "client=127.0.0.1") || !strings.Contains(line, "user=") {
				t.Errorf("failure logged without client address or user: %s", line)
			}
		}
	}
	if len(failures) != 6 || !strings.Contains(failures[3], "user=scada") || !strings.Contains(failures[3], "failures=4") || !strings.Contains(failures[4], "user=nobody") {
		t.Errorf("logged failures:\n%s", strings.Join(failures, "\n"))
	}
	for _, secret := range []string{"guess-", "scada-pw", "typo", base64.StdEncoding.EncodeToString([]byte("guess-login"))} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs hold the password %q:\n%s", secret, logs)
		}
	}
}

// TestAuthThrottleBeforeTheCheck: when the penalty of earlier failures has
// not passed (the client hung up instead of waiting, or guesses on other
// connections), the next attempt waits for it before its password is
// checked, and is refused with 454 4.7.0 once the penalties pending pass
// the cap, even with the right password.
func TestAuthThrottleBeforeTheCheck(t *testing.T) {
	clock := newFakeClock()
	clock.frozen = true
	h := startHarness(t, throttleConfig(t), clock.options())
	c := dial(t, h.addr)
	c.ehlo()
	c.authPlain("scada", "guess-1") // hold 0
	c.authPlain("scada", "guess-2") // hold 1 s: the clock does not move
	if got, want := clock.Sleeps(), []time.Duration{time.Second}; !slices.Equal(got, want) {
		t.Fatalf("slept %v; want %v", got, want)
	}
	c2 := dial(t, h.addr)
	c2.ehlo()
	c2.authPlain("scada", "guess-3")
	// 1 s before the check, then the hold up to 1 s + 2 s.
	if got, want := clock.Sleeps(), []time.Duration{time.Second, 3 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("slept %v; want %v", got, want)
	}
	refused := false
	for i := 0; i < 10 && !refused; i++ {
		code, last := c2.authPlain("scada", fmt.Sprintf("guess-%d", 4+i))
		switch {
		case code == 454 && strings.HasPrefix(last, "454 4.7.0 "):
			refused = true
		case code != 535:
			t.Fatalf("AUTH → %q; want 535 or 454 4.7.0", last)
		}
	}
	if !refused {
		t.Fatalf("penalties piling up past the cap were never refused")
	}
	c2.must("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00scada\x00scada-pw")), 454, "4.7.0")
	clock.Advance(10 * time.Minute)
	clock.Sleeps()
	if code, last := c2.authPlain("scada", "scada-pw"); code != 235 {
		t.Fatalf("correct password once the penalty passed → %q", last)
	}
	if got := clock.Sleeps(); len(got) != 0 {
		t.Fatalf("slept %v", got)
	}
}
