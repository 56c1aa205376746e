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
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// background is a `relay` command running in the background whose stdout
// the test reads line by line.
type background struct {
	cmd     *exec.Cmd
	lines   *bufio.Scanner
	printed strings.Builder
	stderr  testpeer.Buffer
	stdin   io.WriteCloser
	done    chan error
}

func startCommand(t *testing.T, dir string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b := &background{cmd: exec.CommandContext(ctx, relayBin, args...), done: make(chan error, 1)}
	b.cmd.Dir = dir
	b.cmd.Env = append(os.Environ(), "RELAY_CONFIG=")
	b.cmd.Stderr = &b.stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.lines = bufio.NewScanner(out)
	return b
}

// until reads lines until one matches re and returns its submatches.
func (b *background) until(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	for b.lines.Scan() {
		b.printed.WriteString(b.lines.Text() + "\n")
		if m := re.FindStringSubmatch(b.lines.Text()); m != nil {
			return m
		}
	}
	t.Fatalf("relay printed no line matching %s:\n%s\nstderr:\n%s", re, b.printed.String(), b.stderr.String())
	return nil
}

// wait returns the exit code and everything printed.
func (b *background) wait(t *testing.T) (int, string) {
	t.Helper()
	for b.lines.Scan() {
		b.printed.WriteString(b.lines.Text() + "\n")
	}
	go func() { b.done <- b.cmd.Wait() }()
	select {
	case err := <-b.done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, b.printed.String() + b.stderr.String()
	case <-time.After(40 * time.Second):
		t.Fatalf("relay did not end:\n%s\n%s", b.printed.String(), b.stderr.String())
	}
	return 0, ""
}

// TestDeviceSignInThenMail is the SSH-session path for Office 365: relay
// runs; `relay token grant -device` prints a code, the person signs in
// elsewhere, and mail flows upstream with XOAUTH2 as the mailbox.
func TestDeviceSignInThenMail(t *testing.T) {
	ds := testpeer.StartDeviceServer(t, testpeer.DeviceOptions{})
	u := testpeer.StartUpstream(t, testpeer.XOAUTH2Check(testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS}, func(token string) error {
		_, _, err := ds.Validate(token)
		return err
	}, testpeer.AuthOffice365Style))
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	dir := t.TempDir()
	adminAddr := testpeer.FreeAddr(t)
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "o365"

[admin]
listen = %q

[[profiles]]
name = "o365"
hostname = "127.0.0.1"
port = %d
use_starttls = true
tls_ca_file = %q
username = "operator@example.com"
oauth2_client = "entra-public"
interactive = true
scope = "mail offline_access"
`, adminAddr, u.Port, caFile)+ds.ClientTOML("entra-public")), 0o600)
	signIn := func(where string) {
		t.Helper()
		g := startCommand(t, dir, "token", "grant", "-device", "o365", "-config", "relay.toml")
		g.stdin.Close()
		m := g.until(t, regexp.MustCompile(`^\s*code: (\S+)$`))
		if !strings.Contains(g.printed.String(), ds.URL+"/device") {
			t.Errorf("relay token grant -device (%s) did not print the verification URI:\n%s", where, g.printed.String())
		}
		if err := ds.Approve(m[1], "operator@example.com"); err != nil {
			t.Fatal(err)
		}
		if code, out := g.wait(t); code != 0 || !strings.Contains(out, "o365: valid") || !strings.Contains(out, "refresh token held") {
			t.Fatalf("relay token grant -device (%s): exit %d\n%s", where, code, out)
		}
	}
	// Before relay runs: on the data directory; relay then uses the token.
	signIn("no relay running")
	p := startBinary(t, dir, nil, "-config", "relay.toml", "-admin-listen", adminAddr)
	// Again through the running relay's admin API.
	signIn("through the running relay")
	if err := sendPlain(p.addr, "alarms@example.com", "ops@example.com", "Subject: after the device sign-in\r\n\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	msgs := u.WaitMessages(t, 1, 30*time.Second)
	if len(msgs) != 1 || msgs[0].User != "operator@example.com" {
		t.Fatalf("upstream received %d messages (%+v); want one, sent as operator@example.com", len(msgs), msgs)
	}
	for _, f := range ds.TokenRequestForms() {
		if f.Has("client_secret") {
			t.Errorf("a public client's token request carries client_secret: %v", f)
		}
	}
}

// TestPastedRedirectCLI: `relay token grant` with no relay running takes
// the address a browser elsewhere ended on from standard input; a forged
// one is refused and the real one still works.
func TestPastedRedirectCLI(t *testing.T) {
	u, auth := startAdminPeers(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(adminConfig(t, testpeer.FreeAddr(t), testpeer.FreeAddr(t), u, auth, false)), 0o600)
	g := startCommand(t, dir, "token", "grant", "gmail", "-config", "relay.toml")
	authURL := g.until(t, regexp.MustCompile(`^\s*(http\S+/authorize\S*)$`))[1]
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := auth.AuthConsent(context.Background(), c, authURL, true)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	fmt.Fprintln(g.stdin, strings.Replace(loc, "state=", "state=forged", 1))
	fmt.Fprintln(g.stdin, loc)
	code, out := g.wait(t)
	if code != 0 || !strings.Contains(out, "gmail: valid") || !strings.Contains(out, "did not complete the grant") {
		t.Fatalf("relay token grant with pasted addresses: exit %d\n%s\nwant the forged one refused, then a valid token", code, out)
	}
	g.stdin.Close()
}
