package main

// End-to-end tests: the built binary, driven by clients nobody here wrote
// (curl and Python's smtplib), delivering to real go-smtp upstreams.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/internal/testpeer"
)

var relayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-bin-")
	if err != nil {
		panic(err)
	}
	relayBin = filepath.Join(dir, "relay")
	build := exec.Command("go", "build", "-race", "-o", relayBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build relay:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running relay binary.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	stdout *testpeer.Buffer
	stderr *testpeer.Buffer
}

// startBinary runs `relay serve args...` in dir and waits until it
// listens. The admin listener is off unless args set -admin-listen: the
// default port would collide between tests.
func startBinary(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	base := []string{"serve", "-listen", "127.0.0.1:0"}
	if !slices.Contains(args, "-admin-listen") {
		base = append(base, "-admin-listen=")
	}
	cmd := exec.CommandContext(ctx, relayBin, append(base, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RELAY_CONFIG=")
	cmd.Env = append(cmd.Env, env...)
	p := &proc{cmd: cmd, stdout: &testpeer.Buffer{}, stderr: &testpeer.Buffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("relay stdout:\n%s\nrelay stderr:\n%s", p.stdout, p.stderr)
		}
	})
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listening for SMTP on (\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.stdout.Write([]byte(sc.Text() + "\n"))
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case p.addr = <-found:
	case <-time.After(20 * time.Second):
		t.Fatalf("relay did not start listening; stderr:\n%s", p.stderr)
	}
	return p
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (.ci/run installs it): %v", name, err)
	}
	return path
}

// TestEmbeddedDefaultWithCurl is README's first command as a newcomer
// uses it: no configuration, curl sends, the message lands in
// relay-data/maildir/new/.
func TestEmbeddedDefaultWithCurl(t *testing.T) {
	curl := needTool(t, "curl")
	dir := t.TempDir()
	p := startBinary(t, dir, nil)
	msg := filepath.Join(dir, "msg.eml")
	os.WriteFile(msg, []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: curl test\r\n\r\nhello from curl\r\n"), 0o644)
	out, err := exec.Command(curl, "-sS", "smtp://"+p.addr, "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com", "-T", msg).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	files, err := os.ReadDir(filepath.Join(dir, "relay-data", "maildir", "new"))
	if err != nil || len(files) != 1 {
		t.Fatalf("maildir/new = %v, %v; want one message", files, err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "relay-data", "maildir", "new", files[0].Name()))
	if !strings.Contains(string(data), "Subject: curl test\n") || !strings.Contains(string(data), "hello from curl") {
		t.Fatalf("message = %q", data)
	}
	// The startup lines may come after the "listening" line startBinary
	// waits for.
	testpeer.WaitFor(t, "the startup output to say where mail goes and how to add a profile", 10*time.Second, func() bool {
		out := p.stdout.String()
		return strings.Contains(out, "relay-data/maildir/new") && strings.Contains(out, "relay.toml.example")
	})
}

const pythonClient = `
import smtplib, sys
host, port, user, password, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = smtplib.SMTP(host, port, timeout=30)
s.ehlo("scada-host.plant.example.com")
try:
    if user:
        s.login(user, password)
    refused = s.sendmail(sender, ["ops@example.com"], "From: " + sender + "\r\nTo: ops@example.com\r\nSubject: alarm\r\n\r\nTank 4 high level.\r\n")
    print("OK", refused)
except smtplib.SMTPAuthenticationError as e:
    print("AUTH", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPSenderRefused as e:
    print("SENDER", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPRecipientsRefused as e:
    print("RCPT", e.recipients)
except smtplib.SMTPDataError as e:
    print("DATA", e.smtp_code, e.smtp_error.decode())
s.quit()
`

// TestLegacyClientThroughSTARTTLSUpstream: Python's smtplib logs in as a
// local user; the message reaches a STARTTLS upstream that requires AUTH.
// A wrong password gets 535 5.7.8 and a sender without a route 550 5.7.1.
func TestLegacyClientThroughSTARTTLSUpstream(t *testing.T) {
	python := needTool(t, "python3")
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": "upstream-pw"}})
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("scada-pw"), bcrypt.MinCost)
	os.WriteFile(filepath.Join(dir, "upstream.pw"), []byte("upstream-pw\n"), 0o600)
	cfg := fmt.Sprintf(`
[server]
data_dir = "data"
allow_unauthenticated = ["127.0.0.1/32"]

[[users]]
name = "scada"
password_hash = %q
profile = "mailhost"

[[routes]]
sender = "*@reports.example.com"
profile = "mailhost"

[[profiles]]
name = "mailhost"
hostname = "127.0.0.1"
port = %d
use_starttls = true
username = "relay@example.com"
password_file = "upstream.pw"
tls_ca_file = %q
delivery = "direct"
`, hash, u.Port, caFile)
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(cfg), 0o600)
	p := startBinary(t, dir, nil) // finds ./relay.toml by itself
	host, port, _ := strings.Cut(p.addr, ":")
	py := func(user, password, sender string) string {
		out, err := exec.Command(python, "-c", pythonClient, host, port, user, password, sender).CombinedOutput()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := py("scada", "scada-pw", "alarms@plant.example.com"); got != "OK {}" {
		t.Fatalf("logged-in send: %s", got)
	}
	msgs := u.WaitMessages(t, 1, 10*time.Second)
	if m := msgs[0]; m.User != "relay@example.com" || !m.TLS || !strings.Contains(string(m.Data), "Tank 4 high level.") {
		t.Fatalf("upstream got %+v", m)
	}
	if got := py("scada", "wrong", "alarms@plant.example.com"); !strings.HasPrefix(got, "AUTH 535 5.7.8") {
		t.Errorf("wrong password: %s; want AUTH 535 5.7.8", got)
	}
	if got := py("", "", "nobody@elsewhere.example"); !strings.HasPrefix(got, "SENDER 550 5.7.1") {
		t.Errorf("sender without a route: %s; want SENDER 550 5.7.1", got)
	}
	if got := py("", "", "daily@reports.example.com"); got != "OK {}" {
		t.Errorf("routed sender: %s", got)
	}
	if n := len(u.WaitMessages(t, 2, 10*time.Second)); n != 2 {
		t.Errorf("upstream holds %d messages; want 2", n)
	}
}

func runBinary(t *testing.T, dir string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runBinaryEnv(t, dir, nil, stdin, args...)
}

// runBinaryEnv is runBinary with env added to the environment.
func runBinaryEnv(t *testing.T, dir string, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(relayBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "RELAY_CONFIG="), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := `
[[profiles]]
name = "o365"
hostname = "smtp.office365.com"
port = 587
use_starttls = true
username = "a@example.com"
password_env = "RELAY_TEST_PW"
`
	os.WriteFile(filepath.Join(dir, "good.toml"), []byte(good), 0o600)
	cmd := exec.Command(relayBin, "check", "-config", "good.toml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RELAY_TEST_PW=x")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("relay check good.toml: %v", err)
	}
	if got := strings.Fields(string(out)); len(got) < 4 || got[0] != "o365" || got[1] != "classic" || got[2] != "smtp.office365.com:587" || got[4] != "password" {
		t.Errorf("relay check printed %q; want one line: name, kind, upstream, auth", out)
	}

	bad := "[server]\nlisten = \"127.0.0.1:2525\"\n\n[[profiles]]\nname = \"x\"\nhostname = \"h\"\nuse_ssl = true\nuse_starttls = true\n"
	os.WriteFile(filepath.Join(dir, "bad.toml"), []byte(bad), 0o600)
	code, _, stderr := runBinary(t, dir, "", "check", "-config", "bad.toml")
	if code != 1 || !strings.HasPrefix(stderr, "bad.toml:8: profiles[0].use_starttls: ") {
		t.Errorf("relay check bad.toml: exit %d, stderr %q; want 1 and bad.toml:8: ...", code, stderr)
	}
	// serve refuses the same file with exit status 2 (RestartPreventExitStatus=2).
	code, _, stderr = runBinary(t, dir, "", "serve", "-config", "bad.toml")
	if code != 2 || !strings.Contains(stderr, "bad.toml:8:") {
		t.Errorf("relay serve bad.toml: exit %d, stderr %q; want 2", code, stderr)
	}
}

func TestTestCommand(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSImplicit, Users: map[string]string{"relay@example.com": "pw"}})
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
[[profiles]]
name = "smtps"
hostname = "127.0.0.1"
port = %d
use_ssl = true
username = "relay@example.com"
password = "pw"
tls_ca_file = %q
`, u.Port, caFile)
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(cfg), 0o600)
	code, stdout, stderr := runBinary(t, dir, "", "test", "-profile", "smtps", "-to", "ops@example.com", "-v")
	if code != 0 {
		t.Fatalf("relay test: exit %d\n%s\n%s", code, stdout, stderr)
	}
	m := u.Messages()
	if len(m) != 1 || m[0].From != "relay@example.com" || m[0].To[0] != "ops@example.com" || !strings.Contains(string(m[0].Data), "Subject: relay test email") {
		t.Fatalf("upstream got %+v", m)
	}
	if !strings.Contains(stderr, "AUTH PLAIN <redacted>") || strings.Contains(stderr, "cHc") {
		t.Errorf("-v trace should show AUTH redacted:\n%s", stderr)
	}
	code, _, stderr = runBinary(t, dir, "", "test", "-profile", "smtps", "-to", "not an address")
	if code != 1 || !strings.Contains(stderr, "not an address") {
		t.Errorf("bad -to: exit %d, %q", code, stderr)
	}
	u.Close()
	code, _, stderr = runBinary(t, dir, "", "test", "-profile", "smtps", "-to", "ops@example.com")
	if code != 1 || !strings.Contains(stderr, "not sent") {
		t.Errorf("upstream down: exit %d, %q; want 1", code, stderr)
	}
}

func TestHashPassword(t *testing.T) {
	code, stdout, _ := runBinary(t, t.TempDir(), "hunter2\n", "hash-password")
	if code != 0 || bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(stdout)), []byte("hunter2")) != nil {
		t.Fatalf("hash-password: exit %d, %q", code, stdout)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runBinary(t, t.TempDir(), "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "relay ") || !strings.Contains(stdout, "commit") {
		t.Fatalf("version: exit %d, %q", code, stdout)
	}
}
