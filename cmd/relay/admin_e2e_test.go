package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/internal/testpeer"
)

// adminConfig is a relay with an admin listener on adminAddr (password
// "pw" when withPassword), a classic profile "down" whose upstream is down
// (so mail waits in the queue), and two OAuth2 profiles through u with
// tokens from auth: "o365" (client credentials) and "gmail" (interactive).
func adminConfig(t *testing.T, adminAddr, downAddr string, u *testpeer.Upstream, auth *testpeer.AuthServer, withPassword bool) string {
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	hash := ""
	if withPassword {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hash = string(h)
	}
	downHost, downPort, _ := strings.Cut(downAddr, ":")
	return fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "down"

[queue]
min_backoff = "1h"
max_backoff = "2h"

[admin]
listen = %q
password_hash = %q

[[profiles]]
name = "down"
hostname = %q
port = %s
smtp_timeout = "2s"

[[profiles]]
name = "o365"
hostname = "127.0.0.1"
port = %d
use_starttls = true
tls_ca_file = %q
username = "alarms@example.com"
oauth2_client = "entra"
scope = "mail"

[[profiles]]
name = "gmail"
hostname = "127.0.0.1"
port = %d
use_starttls = true
tls_ca_file = %q
username = "reports@example.com"
oauth2_client = "entra"
interactive = true
scope = "mail offline_access"

[[oauth2_clients]]
name = "entra"
client_id = "relay-test"
client_secret = "relay-secret"
auth_url = %q
token_url = %q
`, adminAddr, hash, downHost, downPort, u.Port, caFile, u.Port, caFile, auth.AuthURL, auth.TokenURL)
}

func startAdminPeers(t *testing.T) (*testpeer.Upstream, *testpeer.AuthServer) {
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}})
	u := testpeer.StartUpstream(t, testpeer.XOAUTH2(testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS}, auth, testpeer.AuthOffice365Style))
	return u, auth
}

// grantInBackground runs `relay token grant NAME`, reads the authorization
// URL it prints, consents in a "browser", and returns the command's exit
// code and output.
// The browser must end with wantStatus: 200, or 401 at the token page of
// a server with a password (a person's browser asks for it there).
func grantInBackground(t *testing.T, dir string, auth *testpeer.AuthServer, wantStatus int, args ...string) (int, string) {
	t.Helper()
	// Bounded: the grant waits for the browser at most a minute here.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, relayBin, append([]string{"token", "grant"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RELAY_CONFIG=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testpeer.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var printed strings.Builder
	sc := bufio.NewScanner(out)
	authURL := ""
	for authURL == "" && sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if s := strings.TrimSpace(sc.Text()); strings.HasPrefix(s, auth.AuthURL) {
			authURL = s
		}
	}
	if authURL == "" {
		t.Fatalf("relay token grant printed no authorization URL:\n%s\nstderr:\n%s", printed.String(), stderr.String())
	}
	jar, _ := cookiejar.New(nil)
	resp, err := auth.AuthConsent(context.Background(), &http.Client{Jar: jar, Timeout: 30 * time.Second}, authURL, true)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != wantStatus {
		t.Errorf("the browser ended at %s with %s; want %d", resp.Request.URL, resp.Status, wantStatus)
	}
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, printed.String() + stderr.String()
	case <-time.After(30 * time.Second):
		t.Fatalf("relay token grant did not end after the consent:\n%s\n%s", printed.String(), stderr.String())
	}
	return 0, ""
}

// TestCommandsThroughAdminAPI: with relay running, `relay queue` and
// `relay token` go through its admin API (the spool is locked, so they
// could not work otherwise), with the admin password; /metrics shows the
// traffic; SIGTERM stops the admin listener too.
func TestCommandsThroughAdminAPI(t *testing.T) {
	u, auth := startAdminPeers(t)
	dir := t.TempDir()
	adminAddr := testpeer.FreeAddr(t)
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(adminConfig(t, adminAddr, testpeer.FreeAddr(t), u, auth, true)), 0o600)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("pw\n"), 0o600)
	p := startBinary(t, dir, nil, "-config", "relay.toml", "-admin-listen", adminAddr)
	if err := sendPlain(p.addr, "app@example.com", "ops@example.com", "Subject: waits\r\n\r\nwaits\r\n"); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runBinary(t, dir, "", "queue", "list", "-config", "relay.toml")
	if code != 1 || !strings.Contains(stderr, "-password-file") {
		t.Errorf("queue list without the password: exit %d, %q; want 1 and a hint", code, stderr)
	}
	code, stdout, stderr := runBinary(t, dir, "", "queue", "list", "-config", "relay.toml", "-password-file", "pw")
	m := regexp.MustCompile(`(?m)^(\S+)  \d+ bytes .* profile down`).FindStringSubmatch(stdout)
	if code != 0 || m == nil {
		t.Fatalf("queue list: exit %d\n%s%s\nwant the queued message", code, stdout, stderr)
	}
	id := m[1]
	code, stdout, stderr = runBinary(t, dir, "", "queue", "retry", "all", "-config", "relay.toml", "-password-file", "pw")
	if code != 0 || !strings.Contains(stdout, "1 message(s) due now; the running relay") {
		t.Errorf("queue retry all: exit %d %s%s", code, stdout, stderr)
	}

	code, stdout, stderr = runBinary(t, dir, "", "token", "status", "-config", "relay.toml", "-password-file", "pw")
	if code != 0 || !strings.Contains(stdout, "o365: absent") || !strings.Contains(stdout, "gmail: invalid") || !strings.Contains(stdout, "relay token grant gmail") {
		t.Errorf("token status: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runBinary(t, dir, "", "token", "refresh", "o365", "-config", "relay.toml", "-password-file", "pw")
	if code != 0 || !strings.Contains(stdout, "o365: valid, expires") || auth.TokenRequests("client_credentials") != 1 {
		t.Errorf("token refresh o365: exit %d, %d requests\n%s%s", code, auth.TokenRequests("client_credentials"), stdout, stderr)
	}
	code, _, stderr = runBinary(t, dir, "", "token", "refresh", "gmail", "-config", "relay.toml", "-password-file", "pw")
	if code != 1 || !strings.Contains(stderr, "grant a new token") {
		t.Errorf("token refresh gmail without a grant: exit %d %q; want 1 and the reason", code, stderr)
	}
	code, out := grantInBackground(t, dir, auth, http.StatusUnauthorized, "gmail", "-config", "relay.toml", "-password-file", "pw")
	if code != 0 || !strings.Contains(out, "gmail: valid") || !strings.Contains(out, "refresh token held") || !strings.Contains(out, "http://"+adminAddr+"/oauth2/callback") {
		t.Errorf("token grant gmail through the server: exit %d\n%s", code, out)
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	req.SetBasicAuth("admin", "pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`relay_messages_received_total{profile="down"} 1`, `relay_messages_deferred_total{profile="down"} 2`, `relay_queue_messages{profile="down"} 1`, `relay_oauth2_token_requests_total{profile="o365"} 1`, `relay_oauth2_token_state{profile="gmail",state="valid"} 1`} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	code, stdout, stderr = runBinary(t, dir, "", "queue", "delete", id, "-config", "relay.toml", "-password-file", "pw")
	if code != 0 || !strings.Contains(stdout, "deleted "+id) {
		t.Errorf("queue delete: exit %d %s%s", code, stdout, stderr)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("relay did not stop after SIGTERM")
	}
	if _, err := http.Get("http://" + adminAddr + "/healthz"); err == nil {
		t.Errorf("the admin listener still answers after SIGTERM")
	}
}

// TestCommandsWithoutServer: with no relay running, `relay token` works on
// the data directory and `relay token grant` receives the redirect on
// admin.listen itself; `relay queue` reads the spool.
func TestCommandsWithoutServer(t *testing.T) {
	u, auth := startAdminPeers(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(adminConfig(t, testpeer.FreeAddr(t), testpeer.FreeAddr(t), u, auth, false)), 0o600)

	code, stdout, stderr := runBinary(t, dir, "", "queue", "list", "-config", "relay.toml")
	if code != 0 || !strings.Contains(stdout, "the queue is empty") {
		t.Errorf("queue list: exit %d %s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runBinary(t, dir, "", "token", "refresh", "o365", "-config", "relay.toml")
	if code != 0 || !strings.Contains(stdout, "o365: valid") {
		t.Fatalf("token refresh o365: exit %d %s%s", code, stdout, stderr)
	}
	code, out := grantInBackground(t, dir, auth, http.StatusOK, "gmail", "-config", "relay.toml")
	if code != 0 || !strings.Contains(out, "gmail: valid") {
		t.Fatalf("token grant gmail: exit %d\n%s", code, out)
	}
	code, stdout, stderr = runBinary(t, dir, "", "token", "status", "-config", "relay.toml", "-json")
	if code != 0 || !strings.Contains(stdout, `"profile": "gmail"`) || strings.Count(stdout, `"state": "valid"`) != 2 || !strings.Contains(stdout, `"has_refresh_token": true`) {
		t.Errorf("token status -json: exit %d\n%s%s", code, stdout, stderr)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "data", "tokens", "*")); len(files) != 2 {
		t.Errorf("token store holds %v; want the two profiles' tokens", files)
	}
}
