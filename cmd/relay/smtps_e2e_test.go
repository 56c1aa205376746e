package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestSMTPSListenEndToEnd: with smtps_listen set, relay serve announces the
// implicit-TLS listener in its start-up lines and log, a client that speaks
// TLS from the first byte delivers through it, and SIGTERM stops both
// listeners.
func TestSMTPSListenEndToEnd(t *testing.T) {
	dir := t.TempDir()
	pki := testpeer.TestPKI(t)
	_, certFile, keyFile := pki.Files(t)
	cfg := fmt.Sprintf(`
[server]
data_dir = "data"
default_profile = "local"
tls_cert_file = %q
tls_key_file = %q
smtps_listen = "127.0.0.1:0"

[[profiles]]
name = "local"
kind = "maildir"
path = "maildir"
`, certFile, keyFile)
	os.WriteFile(filepath.Join(dir, "relay.toml"), []byte(cfg), 0o600)
	p := startBinary(t, dir, nil)
	var addr string
	for i := 0; i < 100 && addr == ""; i++ {
		if m := regexp.MustCompile(`listening for SMTPS \(implicit TLS\) on (\S+)`).FindStringSubmatch(p.stdout.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("no SMTPS start-up line:\n%s", p.stdout)
	}
	p.waitLog(t, "relay started", 1)
	if !strings.Contains(p.stderr.String(), "smtps_listen="+addr) {
		t.Errorf("the relay started line does not name the SMTPS listener %s:\n%s", addr, p.stderr)
	}

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.com\r\nTo: b@example.com\r\nSubject: implicit TLS\r\n\r\nover SMTPS\r\n"
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatalf("MAIL over SMTPS: %v", err)
	}
	if err := c.Rcpt("b@example.com"); err != nil {
		t.Fatalf("RCPT over SMTPS: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA over SMTPS: %v", err)
	}
	w.Write([]byte(msg))
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA over SMTPS: %v", err)
	}
	c.Quit()
	files, _ := os.ReadDir(filepath.Join(dir, "maildir", "new"))
	if len(files) != 1 {
		t.Fatalf("maildir/new holds %d messages; want 1", len(files))
	}
	data, _ := os.ReadFile(filepath.Join(dir, "maildir", "new", files[0].Name()))
	if !strings.Contains(string(data), "with ESMTPS id") || !strings.Contains(string(data), "over SMTPS\n") {
		t.Errorf("stored message:\n%s", data)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM", code)
	}
}
