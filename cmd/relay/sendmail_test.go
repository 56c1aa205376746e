package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/sendmail"
)

func TestParseSendmailArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want sendmailOptions
	}{
		{[]string{"-t", "-i"}, sendmailOptions{extract: true, ignoreDots: true}},
		{[]string{"-ti"}, sendmailOptions{extract: true, ignoreDots: true}},
		{[]string{"-oi", "ops@example.com"}, sendmailOptions{ignoreDots: true, rcpts: []string{"ops@example.com"}}},
		{[]string{"-o", "i"}, sendmailOptions{ignoreDots: true}},
		{[]string{"-odi", "-oem", "-odb", "-om", "a@b"}, sendmailOptions{rcpts: []string{"a@b"}}},
		{[]string{"-fme@example.com", "a@b"}, sendmailOptions{from: "me@example.com", fromSet: true, rcpts: []string{"a@b"}}},
		{[]string{"-f", "<me@example.com>"}, sendmailOptions{from: "me@example.com", fromSet: true}},
		{[]string{"-f", "<>"}, sendmailOptions{from: "", fromSet: true}},
		{[]string{"-r", "me@example.com"}, sendmailOptions{from: "me@example.com", fromSet: true}},
		{[]string{"-F", "Cron Daemon", "-i", "-B8BITMIME", "-oem", "root"}, sendmailOptions{fullName: "Cron Daemon", ignoreDots: true, rcpts: []string{"root"}}},
		{[]string{"-FCronDaemon"}, sendmailOptions{fullName: "CronDaemon"}},
		{[]string{"-tif", "me@x"}, sendmailOptions{extract: true, ignoreDots: true, from: "me@x", fromSet: true}},
		{[]string{"-bm", "-v", "-N", "never", "-R", "hdrs", "-V", "envid", "-X", "/dev/null", "-U", "-G"}, sendmailOptions{verbose: true}},
		{[]string{"-config", "/etc/x.toml", "-smtp", "127.0.0.1:25"}, sendmailOptions{config: "/etc/x.toml", smtpAddr: "127.0.0.1:25"}},
		{[]string{"--config=/etc/x.toml", "-smtp=127.0.0.1:25", "a@b"}, sendmailOptions{config: "/etc/x.toml", smtpAddr: "127.0.0.1:25", rcpts: []string{"a@b"}}},
		{[]string{"-C", "/etc/y.toml"}, sendmailOptions{config: "/etc/y.toml"}},
		{[]string{"--", "-strange@example.com"}, sendmailOptions{rcpts: []string{"-strange@example.com"}}},
		{[]string{"a@b", "-t"}, sendmailOptions{rcpts: []string{"a@b", "-t"}}},
	} {
		got, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Errorf("parseSendmailArgs(%q): %v", tc.args, err)
			continue
		}
		if len(got.rcpts) == 0 {
			got.rcpts = nil
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("parseSendmailArgs(%q) = %+v; want %+v", tc.args, *got, tc.want)
		}
	}
	for _, args := range [][]string{{"-Z"}, {"-bs"}, {"-bp"}, {"-q"}, {"-f"}, {"-t", "-F"}, {"-config"}, {"-I"}} {
		if _, err := parseSendmailArgs(args); err == nil {
			t.Errorf("parseSendmailArgs(%q) = nil error; want one", args)
		}
	}
}

// sendmailBin runs `relay sendmail args...` with stdin, in dir.
func sendmailBin(t *testing.T, dir string, env []string, stdin string, args ...string) (int, string) {
	t.Helper()
	return runNamed(t, relayBin, dir, env, stdin, append([]string{"sendmail"}, args...)...)
}

// runNamed runs bin with a clean $RELAY_CONFIG and returns its exit status
// and stderr.
func runNamed(t *testing.T, bin, dir string, env []string, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "RELAY_CONFIG="), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %q did not finish", bin, args)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// maildirMessages reads the messages in dir/new.
func maildirMessages(t *testing.T, dir string) []string {
	t.Helper()
	files, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, "new", f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

// TestSendmailTIntoMaildir is the test: `sendmail -t` with a
// message on stdin, through the running relay binary into the embedded
// default's Maildir.
func TestSendmailTIntoMaildir(t *testing.T) {
	dir := t.TempDir()
	p := startBinary(t, dir, nil)
	msg := "To: Ops <ops@example.com>, dev@example.com\n" +
		"Cc: boss@example.com\n" +
		"Bcc: hidden@example.com,\n" +
		" secret@example.com\n" +
		"Subject: nightly report\n" +
		"\n" +
		"All 4 jobs finished.\n" +
		".leading dot\n"
	code, stderr := sendmailBin(t, dir, nil, msg, "-smtp", p.addr, "-t")
	if code != 0 {
		t.Fatalf("sendmail -t: exit %d: %s", code, stderr)
	}
	msgs := maildirMessages(t, filepath.Join(dir, "relay-data", "maildir"))
	if len(msgs) != 1 {
		t.Fatalf("maildir holds %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	for _, want := range []string{"Received: from ", "To: Ops <ops@example.com>, dev@example.com\n", "Cc: boss@example.com\n", "Subject: nightly report\n", "\nDate: ", "\nMessage-ID: <", "\nFrom: <", "\n\nAll 4 jobs finished.\n.leading dot\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, m)
		}
	}
	for _, bad := range []string{"Bcc", "hidden@", "secret@"} {
		if strings.Contains(m, bad) {
			t.Errorf("delivered message holds %q:\n%s", bad, m)
		}
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(m, "Return-Path: <") || !strings.Contains(m[:strings.Index(m, "\n")], "@"+host+">") {
		t.Errorf("envelope sender is not USER@%s:\n%s", host, m)
	}
	// The relay saw all five recipients: To, Cc and Bcc.
	p.waitLog(t, "rcpts=5", 1)
}

// startUpstreamRelay runs the binary with a direct profile to a test
// upstream, so that tests see the envelope sendmail sent.
func startUpstreamRelay(t *testing.T, opts testpeer.UpstreamOptions) (*proc, *testpeer.Upstream) {
	t.Helper()
	u := testpeer.StartUpstream(t, opts)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "up"

[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = %d
delivery = "direct"
`, u.Port)
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(cfg), 0o644)
	return startBinary(t, dir, nil), u
}

func TestSendmailEnvelope(t *testing.T) {
	p, u := startUpstreamRelay(t, testpeer.UpstreamOptions{})
	dir := t.TempDir()

	// Recipients from the arguments, -f, -F, and -i keeping a lone dot.
	msg := "Subject: with -i\n\nfirst\n.\nafter the dot\n"
	code, stderr := sendmailBin(t, dir, nil, msg, "-smtp", p.addr, "-i", "-f", "alarms@plant.example.com", "-F", "Tank Farm", "ops@example.com, dev@example.com", "root")
	if code != 0 {
		t.Fatalf("sendmail: exit %d: %s", code, stderr)
	}
	host, _ := os.Hostname()
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	if m.From != "alarms@plant.example.com" || !reflect.DeepEqual(m.To, []string{"ops@example.com", "dev@example.com", "root@" + host}) {
		t.Errorf("envelope = %s → %q; want alarms@plant.example.com → ops, dev, root@%s", m.From, m.To, host)
	}
	data := string(m.Data)
	if !strings.Contains(data, "From: \"Tank Farm\" <alarms@plant.example.com>\r\n") || !strings.Contains(data, "\r\nfirst\r\n.\r\nafter the dot\r\n") {
		t.Errorf("message:\n%s", data)
	}

	// Without -i a lone dot ends the message; -t adds the header
	// recipients to the arguments' and Bcc goes.
	msg = "To: a@example.com\nBcc: b@example.com\nSubject: no -i\n\nfirst\n.\nnot sent\n"
	if code, stderr := sendmailBin(t, dir, nil, msg, "-smtp", p.addr, "-t", "c@example.com"); code != 0 {
		t.Fatalf("sendmail -t: exit %d: %s", code, stderr)
	}
	m = u.WaitMessages(t, 2, 10*time.Second)[1]
	if !reflect.DeepEqual(m.To, []string{"c@example.com", "a@example.com", "b@example.com"}) {
		t.Errorf("-t recipients = %q", m.To)
	}
	if data := string(m.Data); strings.Contains(data, "not sent") || strings.Contains(data, "b@example.com") || !strings.HasSuffix(data, "\r\nfirst\r\n") {
		t.Errorf("message:\n%s", data)
	}
}

// TestSendmailCronie: cronie (the cron of RHEL, Fedora and Alpine) mails
// a job's output with exactly this command line; -f root must become
// root@host, as README promises for bare names (relay refuses a sender
// without a domain).
func TestSendmailCronie(t *testing.T) {
	p, u := startUpstreamRelay(t, testpeer.UpstreamOptions{})
	msg := "To: root\nSubject: Cron <root@host> /usr/local/bin/backup\n\nbackup done\n"
	code, stderr := sendmailBin(t, t.TempDir(), nil, msg, "-smtp", p.addr, "-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root")
	if code != 0 {
		t.Fatalf("cronie's sendmail command: exit %d: %s", code, stderr)
	}
	host, _ := os.Hostname()
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	if m.From != "root@"+host || !reflect.DeepEqual(m.To, []string{"root@" + host}) {
		t.Errorf("envelope = %s → %q; want root@%s → root@%s", m.From, m.To, host, host)
	}
	if data := string(m.Data); !strings.Contains(data, "From: \"CronDaemon\" <root@"+host+">\r\n") || !strings.Contains(data, "\r\nbackup done\r\n") {
		t.Errorf("message:\n%s", data)
	}
}

func TestSendmailFailures(t *testing.T) {
	refuse := func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		case strings.HasPrefix(to, "full@"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
		}
		return nil
	}
	p, u := startUpstreamRelay(t, testpeer.UpstreamOptions{OnRcpt: refuse})
	dir := t.TempDir()
	msg := "Subject: x\n\nbody\n"

	code, stderr := sendmailBin(t, dir, nil, msg, "-smtp", p.addr, "ok@example.com", "gone@example.com")
	if code != sendmail.ExNoPerm || !strings.Contains(stderr, "gone@example.com") || !strings.Contains(stderr, "550") {
		t.Errorf("a 550 recipient: exit %d, %q; want %d naming the recipient and the reply", code, stderr, sendmail.ExNoPerm)
	}
	code, stderr = sendmailBin(t, dir, nil, msg, "-smtp", p.addr, "full@example.com")
	if code != sendmail.ExTempFail || !strings.Contains(stderr, "452") {
		t.Errorf("a 452 recipient: exit %d, %q; want %d", code, stderr, sendmail.ExTempFail)
	}
	if n := len(u.Messages()); n != 0 {
		t.Errorf("upstream got %d messages after refusals; want none (all or nothing)", n)
	}

	code, stderr = sendmailBin(t, dir, nil, msg, "-smtp", p.addr)
	if code != sendmail.ExDataErr || !strings.Contains(stderr, "no recipients") {
		t.Errorf("no recipients: exit %d, %q; want %d", code, stderr, sendmail.ExDataErr)
	}
	code, stderr = sendmailBin(t, dir, nil, "Subject: x\n\n", "-smtp", p.addr, "-t")
	if code != sendmail.ExDataErr {
		t.Errorf("-t without recipient headers: exit %d, %q; want %d", code, stderr, sendmail.ExDataErr)
	}
	code, stderr = sendmailBin(t, dir, nil, msg, "-Z", "a@example.com")
	if code != sendmail.ExUsage || !strings.Contains(stderr, "unknown flag -Z") || !strings.Contains(stderr, "usage:") {
		t.Errorf("bad flag: exit %d, %q; want %d", code, stderr, sendmail.ExUsage)
	}
	code, stderr = sendmailBin(t, dir, nil, msg, "-bs")
	if code != sendmail.ExUsage || !strings.Contains(stderr, "-bs") {
		t.Errorf("-bs: exit %d, %q; want %d", code, stderr, sendmail.ExUsage)
	}
}

// TestSendmailRelayNotRunning: a clear message and EX_TEMPFAIL, so that
// cron or a script can try again later.
func TestSendmailRelayNotRunning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte("[server]\nlisten = \""+addr+"\"\n"), 0o644)
	code, stderr := sendmailBin(t, dir, nil, "Subject: x\n\nbody\n", "ops@example.com")
	if code != sendmail.ExTempFail {
		t.Errorf("exit %d; want %d (EX_TEMPFAIL)", code, sendmail.ExTempFail)
	}
	for _, want := range []string{"cannot reach relay at " + addr, "server.listen in relay.toml", "is relay running?"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}

// TestSendmailFindsRelay: the address comes from server.listen of the
// file serve would read: -config, $RELAY_CONFIG, ./relay.toml. And relay
// run under the name sendmail is relay sendmail.
func TestSendmailFindsRelay(t *testing.T) {
	relayDir := t.TempDir()
	p := startBinary(t, relayDir, nil)
	maildir := filepath.Join(relayDir, "relay-data", "maildir")
	conf := "[server]\nlisten = \"" + p.addr + "\"\n[[profiles]]\nname = \"x\"\npassword_file = \"/nonexistent/only-relay-reads-this\"\n"

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "other.toml")
	os.WriteFile(cfgFile, []byte(conf), 0o644)
	if code, stderr := sendmailBin(t, dir, nil, "Subject: 1\n\n", "-config", cfgFile, "a@example.com"); code != 0 {
		t.Fatalf("-config: exit %d: %s", code, stderr)
	}
	if code, stderr := sendmailBin(t, dir, []string{"RELAY_CONFIG=" + cfgFile}, "Subject: 2\n\n", "a@example.com"); code != 0 {
		t.Fatalf("$RELAY_CONFIG: exit %d: %s", code, stderr)
	}
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(conf), 0o644)
	if code, stderr := sendmailBin(t, dir, nil, "Subject: 3\n\n", "a@example.com"); code != 0 {
		t.Fatalf("./relay.toml: exit %d: %s", code, stderr)
	}

	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(relayBin, link); err != nil {
		t.Fatal(err)
	}
	if code, stderr := runNamed(t, link, dir, nil, "To: b@example.com\nSubject: 4\n\n", "-t", "-oi"); code != 0 {
		t.Fatalf("as sendmail: exit %d: %s", code, stderr)
	}
	if n := len(maildirMessages(t, maildir)); n != 4 {
		t.Errorf("maildir holds %d messages; want 4", n)
	}

	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte("[server\n"), 0o644)
	code, stderr := sendmailBin(t, dir, nil, "Subject: 5\n\n", "a@example.com")
	if code != sendmail.ExConfig || !strings.Contains(stderr, "relay.toml") || !strings.Contains(stderr, "-smtp") {
		t.Errorf("broken relay.toml: exit %d, %q; want %d", code, stderr, sendmail.ExConfig)
	}
}

// TestSystemConfigPath: relay sendmail's last file is the one each
// system's service reads: the systemd unit's -config, and on Windows the
// relay.toml of relay service install's layout under %ProgramData%.
func TestSystemConfigPath(t *testing.T) {
	unit := strings.Join(unitSettings(t, "../../dist/relay.service")["Service.ExecStart"], "\n")
	if got := systemConfigPath("linux", ""); !strings.HasSuffix(unit, " -config "+got) {
		t.Errorf(`systemConfigPath("linux") = %q; dist/relay.service runs %q`, got, unit)
	}
	for _, pd := range []string{`C:\ProgramData`, `D:\Data\`} {
		got, want := systemConfigPath("windows", pd), layoutUnder(pd).config
		if got != want || !strings.HasSuffix(got, `\relay\relay.toml`) {
			t.Errorf("systemConfigPath(windows, %q) = %q; want the service's %q", pd, got, want)
		}
	}
	if want := systemConfigPath(runtime.GOOS, programData()); systemConfig != want {
		t.Errorf("systemConfig = %q; want %q", systemConfig, want)
	}
}

// TestSendmailTarget: the order in which relay sendmail looks for relay's
// address, down to /etc/relay/relay.toml and the embedded default.
func TestSendmailTarget(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("RELAY_CONFIG", "")
	write := func(name, listen string) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte("[server]\nlisten = \""+listen+"\"\n"), 0o644)
		return path
	}
	defer func(s string) { systemConfig = s }(systemConfig)
	systemConfig = filepath.Join(dir, "missing.toml")
	check := func(o *sendmailOptions, wantAddr, wantSource string) {
		t.Helper()
		addr, source, err := sendmailTarget(o)
		if err != nil || addr != wantAddr || source != wantSource {
			t.Errorf("sendmailTarget(%+v) = %q, %q, %v; want %q, %q", o, addr, source, err, wantAddr, wantSource)
		}
	}
	check(&sendmailOptions{}, "127.0.0.1:2525", "(embedded default)")
	systemConfig = write("system.toml", "0.0.0.0:2626")
	check(&sendmailOptions{}, "127.0.0.1:2626", "server.listen in "+systemConfig)
	write("relay.toml", "127.0.0.2:2727")
	check(&sendmailOptions{}, "127.0.0.2:2727", "server.listen in relay.toml")
	env := write("env.toml", "127.0.0.3:2828")
	t.Setenv("RELAY_CONFIG", env)
	check(&sendmailOptions{}, "127.0.0.3:2828", "server.listen in "+env)
	flag := write("flag.toml", "[::]:2929")
	check(&sendmailOptions{config: flag}, "[::1]:2929", "server.listen in "+flag)
	check(&sendmailOptions{config: flag, smtpAddr: "127.0.0.1:1"}, "127.0.0.1:1", "-smtp")
	// A file without [server] listen means the default port.
	os.WriteFile(flag, []byte("[[profiles]]\nname = \"x\"\n"), 0o644)
	check(&sendmailOptions{config: flag}, "127.0.0.1:2525", "server.listen in "+flag)
	// A listen that is not host:port is the file's fault, said with its name.
	bad := write("bad.toml", "2525")
	if addr, _, err := sendmailTarget(&sendmailOptions{config: bad}); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("listen = \"2525\": sendmailTarget = %q, %v; want an error naming %s and host:port", addr, err, bad)
	}
}
