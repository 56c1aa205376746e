package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// reloadConfig routes the plant's mail to profile route; both profiles are
// Maildirs under the test's directory.
func reloadConfig(route string) string {
	return fmt.Sprintf(`[server]
data_dir = "data"
allow_unauthenticated = ["127.0.0.0/8"]

[[routes]]
sender = "*@plant.example.com"
profile = %q

[[profiles]]
name = "a"
kind = "maildir"
path = "maildir-a"

[[profiles]]
name = "b"
kind = "maildir"
path = "maildir-b"
`, route)
}

// TestReloadOnSIGHUP is issue 6's reload test as far as it goes without
// the spool: a broken file is refused with FILE:LINE and the old routing
// goes on; a good file changes the routing of the next message; a
// connection opened before the reloads, and a transaction begun before
// them, are not dropped.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.toml")
	os.WriteFile(cfg, []byte(reloadConfig("a")), 0o644)
	p := startBinary(t, dir, nil, "-config", cfg)
	msg := func(subject string) string {
		return "From: alarms@plant.example.com\r\nSubject: " + subject + "\r\n\r\nTank 4 high level.\r\n"
	}
	count := func(profile string) int {
		files, _ := os.ReadDir(filepath.Join(dir, "maildir-"+profile, "new"))
		return len(files)
	}

	idle := dialSMTP(t, p.addr) // opened before any reload, used after
	busy := dialSMTP(t, p.addr) // in a transaction across the good reload
	sendSMTP(t, p.addr, "alarms@plant.example.com", []string{"ops@example.com"}, msg("before"))
	if count("a") != 1 {
		t.Fatalf("maildir-a holds %d messages; want 1", count("a"))
	}

	// A broken file: a route to a profile that does not exist (line 7).
	broken := strings.Replace(reloadConfig("a"), `profile = "a"`, `profile = "nowhere"`, 1)
	os.WriteFile(cfg, []byte(broken), 0o644)
	p.signal(t, syscall.SIGHUP)
	log := p.waitLog(t, "reload refused", 1)
	if want := cfg + ":7: routes[0].profile"; !strings.Contains(log, want) {
		t.Errorf("the refused reload's log does not name %q:\n%s", want, log)
	}
	// A file that is not TOML at all.
	os.WriteFile(cfg, []byte("[server]\nhostname = \"relay\"\nlisten = = 2525\n"), 0o644)
	p.signal(t, syscall.SIGHUP)
	log = p.waitLog(t, "reload refused", 2)
	if want := cfg + ":3: server.listen"; !strings.Contains(log, want) {
		t.Errorf("the refused reload's log does not name %q:\n%s", want, log)
	}
	sendSMTP(t, p.addr, "alarms@plant.example.com", []string{"ops@example.com"}, msg("after the broken file"))
	if count("a") != 2 || count("b") != 0 {
		t.Errorf("after a refused reload: maildir-a %d, maildir-b %d; want 2 and 0 (the old routing)", count("a"), count("b"))
	}

	// A transaction begun before the good reload ends after it.
	if err := busy.Mail("alarms@plant.example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt("ops@example.com", nil); err != nil {
		t.Fatal(err)
	}

	os.WriteFile(cfg, []byte(reloadConfig("b")), 0o644)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "configuration reloaded", 1)
	sendSMTP(t, p.addr, "alarms@plant.example.com", []string{"ops@example.com"}, msg("after the good file"))
	if count("b") != 1 {
		t.Errorf("after the reload: maildir-b holds %d messages; want 1 (the new route)", count("b"))
	}

	if err := sendOn(idle, "alarms@plant.example.com", []string{"ops@example.com"}, msg("on the idle connection")); err != nil {
		t.Errorf("connection opened before the reloads: %v", err)
	}
	if count("b") != 2 {
		t.Errorf("the idle connection's message went elsewhere: maildir-b holds %d; want 2", count("b"))
	}
	w, err := busy.Data()
	if err == nil {
		w.Write([]byte(msg("transaction across the reload")))
		err = w.Close()
	}
	if err != nil {
		t.Errorf("transaction begun before the reload: %v", err)
	}
	// It keeps the profile its MAIL FROM chose.
	if count("a") != 3 {
		t.Errorf("maildir-a holds %d messages; want 3", count("a"))
	}
	if n := strings.Count(p.stderr.String(), "level=ERROR"); n != 2 {
		t.Errorf("the log holds %d errors; want the 2 refused reloads:\n%s", n, p.stderr)
	}
}

// TestReloadKeepsQueuedMail: a message queued before reloads (one refused,
// one applied) is still delivered afterwards.
func TestReloadKeepsQueuedMail(t *testing.T) {
	upAddr := testpeer.FreeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.toml")
	good := queueTestConfig(upAddr)
	os.WriteFile(cfg, []byte(good), 0o644)
	p := startBinary(t, dir, nil, "-config", cfg)
	if err := sendPlain(p.addr, "alarms@plant.example.com", "ops@example.com", "Subject: queued before the reload\r\n\r\nTank 4 high level.\r\n"); err != nil {
		t.Fatalf("send: %v", err)
	}
	p.waitLog(t, "msg=deferred", 1)

	os.WriteFile(cfg, []byte(good+"\n[[routes]]\nsender = \"*\"\nprofile = \"missing\"\n"), 0o644)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "reload refused", 1)
	os.WriteFile(cfg, []byte(strings.Replace(good, `max_backoff = "2s"`, `max_backoff = "1s"`, 1)), 0o644)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "configuration reloaded", 1)

	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Addr: upAddr})
	m := u.WaitMessages(t, 1, 20*time.Second)[0]
	if !strings.Contains(string(m.Data), "queued before the reload") {
		t.Fatalf("upstream got %q", m.Data)
	}
}
