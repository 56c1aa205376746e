package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestJSONLogs runs the binary with -log-format json through a day in its
// life: start with a configuration warning, a message into a Maildir, a
// logged-in client through an upstream whose dialogue is traced, a wrong
// password, a message the upstream refuses, a reload and a shutdown.
// Every line of stderr is one JSON object; the message lines carry id,
// profile, from, rcpts, size, reply and duration; no password shows.
func TestJSONLogs(t *testing.T) {
	const (
		upstreamPassword = "upstream-S3cret-pw"
		userPassword     = "scada-Pa55-word"
		wrongPassword    = "wrong-Pa55-word"
	)
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		TLS:   testpeer.TLSStartTLS,
		Users: map[string]string{"relay@example.com": upstreamPassword},
		OnData: func(m testpeer.Message) error {
			if strings.Contains(string(m.Data), "Subject: refuse me") {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Spam"}
			}
			return nil
		},
	})
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	hash, _ := bcrypt.GenerateFromPassword([]byte(userPassword), bcrypt.MinCost)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.toml")
	// Mode 0644 with an inline password: relay warns at startup.
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "local"

[[users]]
name = "scada"
password_hash = %q
profile = "up"

[[profiles]]
name = "local"
kind = "maildir"
path = "maildir"

[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = %d
use_starttls = true
username = "relay@example.com"
password = %q
tls_ca_file = %q
delivery = "direct"
debug = true
`, hash, u.Port, upstreamPassword, caFile)), 0o644)
	p := startBinary(t, dir, nil, "-config", cfg, "-log-format", "json")

	sendSMTP(t, p.addr, "cron@example.com", []string{"root@example.com", "ops@example.com"}, "Subject: local\r\n\r\nhello\r\n")

	c := dialSMTP(t, p.addr)
	if err := c.Auth(sasl.NewPlainClient("", "scada", userPassword)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := sendOn(c, "alarms@plant.example.com", []string{"ops@example.com"}, "Subject: alarm\r\n\r\nTank 4\r\n"); err != nil {
		t.Fatalf("send through upstream: %v", err)
	}
	if err := sendOn(c, "alarms@plant.example.com", []string{"ops@example.com"}, "Subject: refuse me\r\n\r\nspam\r\n"); err == nil {
		t.Fatal("the upstream's 554 did not reach the client")
	}
	c.Quit()
	bad := dialSMTP(t, p.addr)
	if err := bad.Auth(sasl.NewPlainClient("", "scada", wrongPassword)); err == nil {
		t.Fatal("AUTH with a wrong password succeeded")
	}
	bad.Close()
	u.WaitMessages(t, 1, 10*time.Second)

	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "configuration reloaded", 1)
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}

	stderr := p.stderr.String()
	byMsg := map[string][]map[string]any{}
	for i, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line %d is not one JSON object: %v\n%s", i+1, err, line)
			continue
		}
		msg, _ := rec["msg"].(string)
		byMsg[msg] = append(byMsg[msg], rec)
	}
	// The warning comes at startup and again with the reload.
	if n := len(byMsg["configuration warning"]); n != 2 {
		t.Errorf("%d configuration warnings; want 2", n)
	}
	for _, msg := range []string{"relay started", "configuration reloaded", "relay stopped", "authentication failed"} {
		if len(byMsg[msg]) != 1 {
			t.Errorf("%d lines with msg %q; want 1", len(byMsg[msg]), msg)
		}
	}
	if len(byMsg["delivered"]) != 2 || len(byMsg["delivery failed"]) != 1 {
		t.Fatalf("%d delivered and %d delivery failed lines; want 2 and 1:\n%s", len(byMsg["delivered"]), len(byMsg["delivery failed"]), stderr)
	}
	check := func(rec map[string]any, profile string, rcpts float64, replyPrefix string) {
		t.Helper()
		for _, k := range []string{"id", "profile", "from", "rcpts", "size", "reply", "duration"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("%q line lacks %q: %v", rec["msg"], k, rec)
			}
		}
		if rec["profile"] != profile || rec["rcpts"] != rcpts {
			t.Errorf("%q line: profile %v, rcpts %v; want %s, %v", rec["msg"], rec["profile"], rec["rcpts"], profile, rcpts)
		}
		if id, _ := rec["id"].(string); id == "" {
			t.Errorf("%q line: empty id", rec["msg"])
		}
		if size, _ := rec["size"].(float64); size <= 0 {
			t.Errorf("%q line: size %v", rec["msg"], rec["size"])
		}
		if reply, _ := rec["reply"].(string); !strings.HasPrefix(reply, replyPrefix) {
			t.Errorf("%q line: reply %q; want %q...", rec["msg"], reply, replyPrefix)
		}
		if d, _ := rec["duration"].(string); d == "" {
			t.Errorf("%q line: duration %v; want a duration string", rec["msg"], rec["duration"])
		} else if _, err := time.ParseDuration(d); err != nil {
			t.Errorf("%q line: duration %q: %v", rec["msg"], d, err)
		}
	}
	check(byMsg["delivered"][0], "local", 2, "2.0.0 delivered to maildir")
	if byMsg["delivered"][0]["from"] != "cron@example.com" {
		t.Errorf("delivered line: from %v", byMsg["delivered"][0]["from"])
	}
	check(byMsg["delivered"][1], "up", 1, "2.0.0")
	check(byMsg["delivery failed"][0], "up", 1, "554 5.7.1 Spam")

	// The SMTP dialogue was traced (debug = true), with AUTH redacted.
	if !strings.Contains(stderr, "EHLO") {
		t.Errorf("no SMTP trace in the log although the profile has debug = true")
	}
	plain := func(user, pw string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
	}
	for _, secret := range []string{upstreamPassword, userPassword, wrongPassword, plain("relay@example.com", upstreamPassword), plain("scada", userPassword), plain("scada", wrongPassword)} {
		if strings.Contains(stderr, secret) {
			t.Errorf("the log holds the secret %q", secret)
		}
	}
}

// TestJSONConfigError: with -log-format json, even the configuration
// error that stops relay is one JSON line; exit status 2 stays.
func TestJSONConfigError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.toml"), []byte("[server]\nlisten = \"nowhere\"\nmax_recipients = 0\n"), 0o644)
	code, _, stderr := runBinary(t, dir, "", "serve", "-config", "bad.toml", "-log-format", "json")
	if code != exitConfig {
		t.Errorf("exit status %d; want %d", code, exitConfig)
	}
	var rec struct {
		Level    string
		Msg      string
		Problems []string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(stderr)), &rec); err != nil {
		t.Fatalf("stderr is not one JSON line: %v\n%s", err, stderr)
	}
	if rec.Level != "ERROR" || len(rec.Problems) != 3 || !strings.Contains(strings.Join(rec.Problems, "\n"), "bad.toml:2: server.listen: ") {
		t.Errorf("config error logged as %+v", rec)
	}
}
