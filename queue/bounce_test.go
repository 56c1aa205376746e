package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// TestQueueRefusedRecipientBounces: one of two recipients refused with
// 550: one delivered, one DSN back to the sender.
func TestQueueRefusedRecipientBounces(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: refuse("gone@example.com", 550, smtp.EnhancedCode{5, 1, 1}, "User unknown")})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, u.Addr), sp, Options{})
	h.submit(t, "alarms@plant.example.com", "ops@example.com", "gone@example.com")
	orig, dsn := splitBounce(u.WaitMessages(t, 2, 10*time.Second))
	if orig == nil || len(orig.To) != 1 || orig.To[0] != "ops@example.com" {
		t.Fatalf("original delivered as %+v; want to ops@example.com only", orig)
	}
	if dsn == nil || len(dsn.To) != 1 || dsn.To[0] != "alarms@plant.example.com" {
		t.Fatalf("bounce %+v; want one from <> to the sender", dsn)
	}
	data := string(dsn.Data)
	for _, want := range []string{
		"multipart/report", "report-type=delivery-status", "Auto-Submitted: auto-replied",
		"Content-Type: message/delivery-status", "Final-Recipient: rfc822; gone@example.com",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; ", "User unknown",
		"Content-Type: text/rfc822-headers", "Subject: pump 3",
	} {
		if !strings.Contains(data, want) {
			t.Errorf("bounce lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(data, "Pump 3 stopped.") {
		t.Errorf("bounce quotes the original body; want headers only")
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestQueueNoBounceLoops: mail from the null sender is never bounced, and
// a bounce that cannot be delivered is dropped, not bounced again.
func TestQueueNoBounceLoops(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "nobody here"}
	}})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, u.Addr), sp, Options{})
	h.submit(t, "", "gone@example.com")
	h.submit(t, "also-gone@example.com", "gone@example.com") // its bounce is refused too
	testpeer.WaitFor(t, "the spool to empty", 10*time.Second, func() bool { return sp.Len() == 0 })
	time.Sleep(300 * time.Millisecond)
	if n := len(u.Messages()); n != 0 {
		t.Fatalf("upstream accepted %d messages; want none", n)
	}
	if sp.Len() != 0 {
		t.Fatalf("spool holds %d messages; a bounce loop?", sp.Len())
	}
}

// TestQueueDeliversVersion2Spool: mail queued by a relay of spool format
// version 2, whose replies were strings, is delivered after an upgrade: to
// the recipient the upstream takes now, and bounced, with the status its
// old reply string held, for the one that expired.
func TestQueueDeliversVersion2Spool(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: refuse("slow@example.com", 451, smtp.EnhancedCode{4, 3, 0}, "try later")})
	dir := t.TempDir()
	sp := testpeer.OpenSpool(t, dir)
	id := queueMessage(t, sp, nil, "alarms@plant.example.com", "ops@example.com", "slow@example.com")
	env, _ := sp.Envelope(id)
	sp.Close()
	// What that relay wrote: an envelope line of version 2, and after a
	// first attempt an ID.json of version 2.
	name := filepath.Join(dir, "queue", id+".mail")
	raw, _ := os.ReadFile(name)
	os.WriteFile(name, []byte(strings.Replace(string(raw), `"version":3`, `"version":2`, 1)), 0o600)
	js := fmt.Sprintf(`{
  "version": 2,
  "id": %q,
  "profile": "up",
  "from": "alarms@plant.example.com",
  "recipients": [
    {"addr": "ops@example.com", "state": "pending", "reply": "upstream 127.0.0.1:25: MAIL FROM: 421 4.7.0 too many connections"},
    {"addr": "slow@example.com", "state": "pending", "reply": "upstream 127.0.0.1:25: RCPT TO: 452 4.2.2 mailbox full"}
  ],
  "arrived": "2025-11-25T07:59:12.123456Z",
  "attempts": 1,
  "last_error": "upstream 127.0.0.1:25: MAIL FROM: 421 4.7.0 too many connections",
  "size": %d
}
`, id, env.Size)
	os.WriteFile(filepath.Join(dir, "queue", id+".json"), []byte(js), 0o600)

	sp = testpeer.OpenSpool(t, dir)
	if sp.Len() != 1 {
		t.Fatalf("spool of format version 2 loads %d messages; want 1", sp.Len())
	}
	// Arrived in 2025: past max_lifetime at the first attempt, so the
	// 451 expires it and the bounce carries the 4.3.0 of the new reply.
	startQueue(t, testConfig(t, u.Addr), sp, Options{})
	orig, dsn := splitBounce(u.WaitMessages(t, 2, 10*time.Second))
	if orig == nil || string(orig.Data) != msgBody || len(orig.To) != 1 || orig.To[0] != "ops@example.com" {
		t.Fatalf("upstream got %+v; want the queued message, as it was, to ops@example.com", orig)
	}
	if dsn == nil || !strings.Contains(string(dsn.Data), "Subject: pump 3") ||
		!strings.Contains(string(dsn.Data), "Final-Recipient: rfc822; slow@example.com") ||
		!strings.Contains(string(dsn.Data), "Status: 4.3.0") {
		t.Fatalf("bounce %+v; want one quoting the headers, for slow@example.com, status 4.3.0", dsn)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "queue", "*"))
		// The spool keeps removed messages' files for reuse as free-N.tmp.
		files = slices.DeleteFunc(files, func(f string) bool { return strings.HasPrefix(filepath.Base(f), "free-") })
		return sp.Len() == 0 && len(files) == 0
	})
}

// TestQueueLogsReplyHint: a refusal a person can act on (Exchange's
// SendAsDenied) carries its hint in the queue's log line, as the admin
// page shows it.
func TestQueueLogsReplyHint(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnData: func(testpeer.Message) error {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"}
	}})
	sp := testpeer.OpenSpool(t, t.TempDir())
	h := startQueue(t, testConfig(t, u.Addr), sp, Options{})
	h.submit(t, "alarms@plant.example.com", "ops@example.com")
	want := oauth.ReplyHint("554 5.2.0 SendAsDenied")
	if want == "" {
		t.Fatal("no hint for SendAsDenied in oauth's table")
	}
	testpeer.WaitFor(t, "the bounced line", 10*time.Second, func() bool { return strings.Contains(h.logs.String(), "msg=bounced") })
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, "msg=bounced") && !strings.Contains(line, "hint=") {
			t.Errorf("bounced line without its hint: %s", line)
		}
	}
}
