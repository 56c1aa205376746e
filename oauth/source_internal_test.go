package oauth

import (
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestExpiryOf(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := func(extra map[string]any) *oauth2.Token {
		return (&oauth2.Token{AccessToken: "x"}).WithExtra(extra)
	}
	for _, tc := range []struct {
		name string
		tok  *oauth2.Token
		def  time.Duration
		want time.Time
	}{
		{"expires_in number", tok(map[string]any{"expires_in": float64(3599)}), 0, now.Add(3599 * time.Second)},
		{"expires_in string", tok(map[string]any{"expires_in": "3600"}), 0, now.Add(time.Hour)},
		{"form-encoded", (&oauth2.Token{AccessToken: "x"}).WithExtra(url.Values{"expires_in": {"60"}}), 0, now.Add(time.Minute)},
		{"none, default 10m", tok(map[string]any{}), 10 * time.Minute, now.Add(10 * time.Minute)},
		{"none, default 0: never", tok(map[string]any{}), 0, time.Time{}},
		{"none, default negative: never", tok(map[string]any{}), -time.Second, time.Time{}},
		{"expires_in beats the default", tok(map[string]any{"expires_in": float64(5)}), time.Hour, now.Add(5 * time.Second)},
	} {
		if got := expiryOf(tc.tok, tc.def, now); !got.Equal(tc.want) {
			t.Errorf("%s: expiryOf = %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestRefreshWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		refreshBefore time.Duration
		life, at      time.Duration // token lifetime; time since it arrived
		want          bool
	}{
		{"default 300s, hour token, early", 300 * time.Second, time.Hour, 50 * time.Minute, false},
		{"default 300s, hour token, in window", 300 * time.Second, time.Hour, 56 * time.Minute, true},
		{"0: exactly at expiry, before", 0, time.Hour, time.Hour - time.Second, false},
		{"0: exactly at expiry", 0, time.Hour, time.Hour, true},
		{"negative: exactly at expiry", -time.Minute, time.Hour, 59 * time.Minute, false},
		{"window longer than life: half life", 300 * time.Second, 2 * time.Second, 900 * time.Millisecond, false},
		{"window longer than life: half life reached", 300 * time.Second, 2 * time.Second, time.Second, true},
	} {
		s := &TokenSource{set: settings{refreshBefore: tc.refreshBefore}}
		s.tok = tokens{access: "x", obtained: now, expiry: now.Add(tc.life)}
		if got := s.inWindowLocked(now.Add(tc.at)); got != tc.want {
			t.Errorf("%s: in window = %t; want %t", tc.name, got, tc.want)
		}
	}
	s := &TokenSource{set: settings{refreshBefore: time.Hour}, tok: tokens{access: "x"}}
	if s.inWindowLocked(now) || !s.validLocked(now.Add(1000*time.Hour)) {
		t.Error("a token without expiry must stay valid and never be due")
	}
}
