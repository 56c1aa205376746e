package relay

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

// TestRefusalsLoggedOnce: every command relay refuses gets exactly one log
// line with the client's address, the reply with its enhanced code and the
// reason; so do the ones go-smtp answers itself on a connection in the
// clear.
func TestRefusalsLoggedOnce(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such mailbox here"}
		}
		return nil
	}})
	cfg := hostileConfig(t, u, `["127.0.0.1/32"]`)
	h := startHarness(t, cfg, Options{})
	tests := []struct {
		name  string
		talk  func(c *client)
		match string   // the reply's codes: the line that has them
		wants []string // what it must say besides
	}{
		{"MAIL without a route", func(c *client) {
			c.must("MAIL FROM:<x@elsewhere.example>", 550, "5.7.1")
		}, "550 5.7.1", []string{"command=MAIL", "from=x@elsewhere.example", "reason="}},
		{"MAIL with a bad address", func(c *client) {
			c.must("MAIL FROM:<a\x01@plant.example.com>", 553, "5.1.7")
		}, "553 5.1.7", []string{"command=MAIL", "control character"}},
		{"MAIL without a domain (go-smtp answers)", func(c *client) {
			c.must("MAIL FROM:<root>", 501, "5.5.2")
		}, "501 5.5.2", []string{`msg="command refused"`, "reason=\"answered by the SMTP library"}},
		{"RCPT past max_recipients (go-smtp answers)", func(c *client) {
			c.must("MAIL FROM:<a@plant.example.com>", 250, "")
			for i := 0; i < 5; i++ {
				c.must(fmt.Sprintf("RCPT TO:<r%d@example.com>", i), 250, "")
			}
			c.must("RCPT TO:<r6@example.com>", 452, "4.5.3")
		}, "452 4.5.3", []string{`msg="command refused"`}},
		{"RCPT refused by the upstream", func(c *client) {
			c.must("MAIL FROM:<a@plant.example.com>", 250, "")
			c.must("RCPT TO:<gone@example.com>", 550, "5.1.1")
		}, "550 5.1.1", []string{"command=RCPT", `reply="550 5.1.1 No such mailbox here"`, "to=gone@example.com", "reason=\"upstream 127.0.0.1:"}},
		{"AUTH during a transaction", func(c *client) {
			c.must("MAIL FROM:<a@plant.example.com>", 250, "")
			c.must("AUTH PLAIN AHByaW50ZXIAcHc=", 503, "5.5.1")
		}, "503 5.5.1", []string{"command=AUTH", "mechanism=PLAIN"}},
		{"AUTH with a wrong password", func(c *client) {
			if code, last := c.authPlain("app", "wrong"); code != 535 {
				c.t.Fatalf("AUTH → %q; want 535", last)
			}
		}, "535 5.7.8", []string{`msg="authentication failed"`, "user=app"}},
		{"DATA too big", func(c *client) {
			c.must("MAIL FROM:<a@plant.example.com>", 250, "")
			c.must("RCPT TO:<b@example.com>", 250, "")
			if code, last := c.data("Subject: big\r\n\r\n" + strings.Repeat("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n", hostileMax/40+10)); code != 552 {
				c.t.Fatalf("DATA → %q; want 552", last)
			}
		}, "552 5.3.4", []string{"command=DATA", "reason="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.logs.String())
			c := dial(t, h.addr)
			c.ehlo()
			tt.talk(c)
			c.cmd("QUIT")
			h.waitIdle(t)
			lines := grepLines(h.logs.String()[before:], tt.match)
			if len(lines) != 1 {
				t.Fatalf("%d log lines with %s; want 1:\n%s", len(lines), tt.match, h.logs.String()[before:])
			}
			for _, want := range append(tt.wants, "client=127.0.0.1") {
				if !strings.Contains(lines[0], want) {
					t.Errorf("log line %s\nlacks %s", lines[0], want)
				}
			}
		})
	}
}

// TestLocalTroubleClasses: a file-system failure (disk full, an I/O
// error) may clear up, 451 4.3.0; anything else fails the same way every
// time, 554 5.3.0, so that clients do not retry it for ever.
func TestLocalTroubleClasses(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{&fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, 451},
		{fmt.Errorf("spool: write: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.EIO}), 451},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EXDEV}, 451},
		{syscall.EDQUOT, 451},
		{fmt.Errorf("create: %w", spool.ErrClosed), 451},
		{io.ErrShortBuffer, 554},
		{errors.New("envelope line of 2000000 bytes is too long"), 554},
	}
	for _, tt := range tests {
		r := localTrouble("store", tt.err)
		if r.reply.Code != tt.code || r.reply.EnhancedCode[1] != 3 || r.reply.EnhancedCode[0] != tt.code/100 {
			t.Errorf("localTrouble(%v) = %s; want %d X.3.0", tt.err, replyString(r.reply), tt.code)
		}
	}
}

// TestMaildirFailureIsTemporary: a Maildir relay cannot write (here: its
// tmp/ is a file) answers 451 4.3.0, logged once as an error (the
// "delivery failed" line of a message delivered while the client waits).
func TestMaildirFailureIsTemporary(t *testing.T) {
	cfg, dir := maildirConfig(t, "")
	h := startHarness(t, cfg, Options{})
	os.RemoveAll(filepath.Join(dir, "tmp"))
	os.WriteFile(filepath.Join(dir, "tmp"), nil, 0o600)
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 451 || !strings.HasPrefix(last, "451 4.3.0 ") {
		t.Fatalf("DATA → %q; want 451 4.3.0", last)
	}
	lines := grepLines(h.logs.String(), "451 4.3.0")
	if len(lines) != 1 || !strings.Contains(lines[0], `level=ERROR msg="delivery failed"`) || !strings.Contains(lines[0], "not a directory") {
		t.Fatalf("log lines for the refused DATA: %q; want one ERROR line with the cause", lines)
	}
}
