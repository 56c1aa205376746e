package relay

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestMaildirIsPrivate: the Maildir's directories are 0700 and each
// message 0600, whatever the umask, so other users of the machine cannot
// read the mail.
func TestMaildirIsPrivate(t *testing.T) {
	permissiveUmask(t) // the modes must come from relay
	root := t.TempDir()
	dir := filepath.Join(root, "relay-data", "maildir")
	m, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.deliver("a@example.com", strings.NewReader("Subject: x\r\n\r\nsecret report\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "relay-data"), dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		info, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s has mode %04o; want 0700", d, perm)
		}
	}
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 1 {
		t.Fatalf("new/ holds %d files", len(files))
	}
	info, _ := files[0].Info()
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("message has mode %04o; want 0600", perm)
	}
}

// secretForms are the ways a secret could show in a log or a reply: as
// it is, and base64-encoded alone or inside a SASL PLAIN message at each
// of the three alignments.
func secretForms(user, secret string) []string {
	forms := []string{secret}
	for pad := 0; pad < 3; pad++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x00", pad) + secret))
		forms = append(forms, enc[4:len(enc)-4]) // the part that only the secret determines
	}
	forms = append(forms,
		base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+secret)),
		base64.StdEncoding.EncodeToString([]byte(user+"\x00"+user+"\x00"+secret)))
	return forms
}

// TestNoSecretInLogsOrReplies: sessions that log in (right and wrong
// passwords, PLAIN and LOGIN) and deliver through profiles with upstream
// passwords (right and wrong, with the profile's SMTP trace on), logged at
// debug level: neither the logs nor any reply a client sees hold a
// password in any form.
func TestNoSecretInLogsOrReplies(t *testing.T) {
	const (
		localPW    = "local-S3cret-Passw0rd-4-scada"
		upstreamPW = "upstream-S3cret-Passw0rd-4-relay"
		wrongPW    = "wrong-S3cret-Guess-0f-an-attacker"
	)
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": upstreamPW}})
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	profile := func(name, pw string) string {
		return fmt.Sprintf(`
[[profiles]]
name = %q
hostname = "127.0.0.1"
port = %d
use_starttls = true
username = "relay@example.com"
password = %q
tls_ca_file = %q
delivery = "direct"
debug = true
`, name, u.Port, pw, caFile)
	}
	cfg := fmt.Sprintf(`
[server]
data_dir = %q
allow_unauthenticated = []

[[users]]
name = "scada"
password_hash = %q
profile = "good"

[[users]]
name = "broken"
password_hash = %q
profile = "bad"
`, t.TempDir(), hash(t, localPW), hash(t, localPW)) + profile("good", upstreamPW) + profile("bad", wrongPW)
	clock := newFakeClock()
	h := startHarness(t, cfg, clock.options())

	var replies []string
	record := func(c *client, line string) (int, string) {
		c.send(line)
		code, lines := c.reply()
		replies = append(replies, lines...)
		return code, lines[len(lines)-1]
	}
	send := func(c *client) {
		record(c, "MAIL FROM:<alarms@plant.example.com>")
		record(c, "RCPT TO:<ops@example.com>")
		if code, _ := record(c, "DATA"); code == 354 {
			c.conn.Write([]byte(msgBody + ".\r\n"))
			_, lines := c.reply()
			replies = append(replies, lines...)
		}
	}

	// A good login and a delivery with the right upstream password.
	c := dial(t, h.addr)
	c.ehlo()
	if code, last := record(c, "AUTH PLAIN "+b64("\x00scada\x00"+localPW)); code != 235 {
		t.Fatalf("AUTH → %q", last)
	}
	send(c)
	// Wrong local passwords, PLAIN and LOGIN.
	c = dial(t, h.addr)
	c.ehlo()
	record(c, "AUTH PLAIN "+b64("\x00scada\x00"+wrongPW))
	record(c, "AUTH LOGIN "+b64("scada"))
	record(c, b64(wrongPW))
	record(c, "AUTH PLAIN "+b64("scada\x00scada\x00"+wrongPW))
	// A profile whose upstream password is wrong: the upstream refuses
	// relay's AUTH, and the client is told.
	c = dial(t, h.addr)
	c.ehlo()
	if code, last := record(c, "AUTH LOGIN"); code != 334 {
		t.Fatalf("AUTH LOGIN → %q", last)
	}
	record(c, b64("broken"))
	if code, last := record(c, b64(localPW)); code != 235 {
		t.Fatalf("AUTH LOGIN → %q", last)
	}
	send(c)

	if msgs := u.Messages(); len(msgs) != 1 {
		t.Fatalf("upstream got %d messages; want the one with the right password", len(msgs))
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "smtp trace") || !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, "level=DEBUG") {
		t.Fatalf("the logs lack the trace, the failures or debug lines; the test would prove nothing:\n%s", logs)
	}
	seen := logs + "\n" + strings.Join(replies, "\n")
	for _, s := range []struct{ user, secret string }{
		{"scada", localPW}, {"broken", localPW}, {"scada", wrongPW}, {"relay@example.com", upstreamPW}, {"relay@example.com", wrongPW},
	} {
		for _, form := range secretForms(s.user, s.secret) {
			if strings.Contains(seen, form) {
				t.Errorf("a log line or a reply holds %q (a form of %q's password)", form, s.user)
			}
		}
	}
}
