package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// healthProfile is the one profile every configuration needs.
const healthProfile = "[[profiles]]\nname = \"local\"\nkind = \"maildir\"\npath = \"maildir\"\n"

// TestHealth: relay health says ok (exit 0) while relay serves, found by
// -admin or by admin.listen of the configuration, and exit 1 once it has
// stopped, as a container's HEALTHCHECK needs.
func TestHealth(t *testing.T) {
	dir := t.TempDir()
	adminAddr := testpeer.FreeAddr(t)
	cfg := filepath.Join(dir, "relay.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(healthProfile+"[admin]\nlisten = %q\n", adminAddr)), 0o644)
	p := startBinary(t, dir, nil, "-config", cfg, "-admin-listen", adminAddr)
	p.waitLog(t, "admin listener started", 1)

	for _, args := range [][]string{{"health", "-admin", adminAddr}, {"health", "-config", cfg}} {
		if code, stdout, stderr := runBinary(t, dir, "", args...); code != 0 || stdout != "ok\n" {
			t.Errorf("relay %s = %d, %q, %q; want 0, ok", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	// $RELAY_CONFIG, as in the container image.
	if code, stdout, stderr := runBinaryEnv(t, dir, []string{"RELAY_CONFIG=" + cfg}, "", "health"); code != 0 {
		t.Errorf("RELAY_CONFIG=%s relay health = %d, %q, %q; want 0", cfg, code, stdout, stderr)
	}

	p.signal(t, syscall.SIGTERM)
	p.waitExit(t)
	code, stdout, stderr := runBinary(t, dir, "", "health", "-config", cfg)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "no relay answers on http://"+adminAddr) {
		t.Errorf("relay health after relay stopped = %d, %q, %q; want 1 and no relay answers", code, stdout, stderr)
	}
}

// TestHealthRefusals: whatever else answers, or no admin listener at all,
// is unhealthy with a reason.
func TestHealthRefusals(t *testing.T) {
	dir := t.TempDir()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	off := filepath.Join(dir, "off.toml")
	os.WriteFile(off, []byte(healthProfile+"[admin]\nlisten = \"\"\n"), 0o644)
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(healthProfile+"[admin]\nlisten = 8025\n"), 0o644)
	for _, tc := range []struct {
		args       []string
		code       int
		wantStderr string
	}{
		{[]string{"-admin", strings.TrimPrefix(failing.URL, "http://")}, 1, "503 Service Unavailable: not a relay"},
		{[]string{"-config", off}, 1, "admin.listen is off in " + off},
		{[]string{"-config", bad}, exitConfig, bad + ":6:"},
		{[]string{"-admin", "no-port"}, 1, "admin.listen \"no-port\""},
	} {
		code, stdout, stderr := runBinary(t, dir, "", append([]string{"health"}, tc.args...)...)
		if code != tc.code || stdout != "" || !strings.Contains(stderr, tc.wantStderr) {
			t.Errorf("relay health %s = %d, %q, %q; want %d and %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.wantStderr)
		}
	}
}
