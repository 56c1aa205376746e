package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// oauthConfig is a relay whose default profile sends through u with
// XOAUTH2 tokens from auth (client credentials).
func oauthConfig(t *testing.T, u *testpeer.Upstream, auth *testpeer.AuthServer) string {
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	return fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "o365"

[queue]
min_backoff = "500ms"
max_backoff = "2s"

[admin]
listen = ""

[[profiles]]
name = "o365"
hostname = "127.0.0.1"
port = %d
use_starttls = true
tls_ca_file = %q
username = "alarms@example.com"
oauth2_client = "entra"
scope = "https://outlook.office365.com/.default"
access_token_timeout = "1s"

[[oauth2_clients]]
name = "entra"
client_id = "relay-test"
client_secret_file = "client.secret"
token_url = %q
`, u.Port, caFile, auth.TokenURL)
}

// TestOAuth2ClientCredentialsEndToEnd is the "done when" for a
// non-interactive profile: a legacy client's message goes out with XOAUTH2
// and a token relay obtained itself, and the token is stored 0600.
func TestOAuth2ClientCredentialsEndToEnd(t *testing.T) {
	python := needTool(t, "python3")
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{})
	u := testpeer.StartUpstream(t, testpeer.XOAUTH2(testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS}, auth, testpeer.AuthOffice365Style))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(oauthConfig(t, u, auth)), 0o600)
	os.WriteFile(filepath.Join(dir, "client.secret"), []byte("relay-secret\n"), 0o600)
	p := startBinary(t, dir, nil)
	host, port, _ := strings.Cut(p.addr, ":")
	for i := 0; i < 2; i++ {
		out, err := exec.Command(python, "-c", pythonClient, host, port, "", "", "alarms@example.com").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK {}" {
			t.Fatalf("python: %v %s", err, out)
		}
	}
	msgs := u.WaitMessages(t, 2, 20*time.Second)
	if msgs[0].User != "alarms@example.com" || !msgs[0].TLS {
		t.Fatalf("upstream got %+v; want an XOAUTH2 login as alarms@example.com over TLS", msgs[0])
	}
	if n := auth.TokenRequests("client_credentials"); n != 1 {
		t.Errorf("token requests = %d; want 1 for two messages", n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "data", "tokens", "*"))
	if len(files) != 1 {
		t.Fatalf("token store holds %v; want one file", files)
	}
	if info, err := os.Stat(files[0]); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, %v; want 0600", info.Mode(), err)
	}
	if strings.Contains(p.stderr.String(), "relay-secret") {
		t.Errorf("the client secret reached the log")
	}
}

// TestTokenEndpointDownThenBack: mail queued while the token endpoint is
// down waits, and goes out once it is back.
func TestTokenEndpointDownThenBack(t *testing.T) {
	auth := testpeer.StartAuthServer(t, testpeer.AuthOptions{})
	if err := auth.SetTokenFailure(testpeer.AuthFail503); err != nil {
		t.Fatal(err)
	}
	u := testpeer.StartUpstream(t, testpeer.XOAUTH2(testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS}, auth, testpeer.AuthOffice365Style))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(oauthConfig(t, u, auth)), 0o600)
	os.WriteFile(filepath.Join(dir, "client.secret"), []byte("relay-secret\n"), 0o600)
	p := startBinary(t, dir, nil)
	if err := sendPlain(p.addr, "alarms@example.com", "ops@example.com", "Subject: queued\r\n\r\nwhile the token endpoint is down\r\n"); err != nil {
		t.Fatalf("send: %v; want 250 while the token endpoint is down", err)
	}
	testpeer.WaitFor(t, "a deferral for the token", 15*time.Second, func() bool {
		s := p.stderr.String()
		return strings.Contains(s, "msg=deferred") && strings.Contains(s, "access token")
	})
	if len(u.Messages()) != 0 {
		t.Fatal("a message went out without a token")
	}
	auth.SetTokenFailure(testpeer.AuthFailNone)
	m := u.WaitMessages(t, 1, 45*time.Second)[0]
	if !strings.Contains(string(m.Data), "while the token endpoint is down") {
		t.Fatalf("upstream got %q", m.Data)
	}
}
