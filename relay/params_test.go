package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestSMTPUTF8ToUpstreamWithout: a message with a non-ASCII address for an
// upstream that does not offer SMTPUTF8 will never go through: direct
// mode answers 553 5.6.7 at once (RFC 6531 §3.7.5), queue mode bounces it.
// One declared SMTPUTF8 with ASCII addresses is delivered from the queue
// without the parameter (direct mode: TestSMTPUTF8DirectDeclaredASCII).
func TestSMTPUTF8ToUpstreamWithout(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{NoSMTPUTF8: true})

	direct := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	c := dial(t, direct.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<用户@例子.广告>", 553, "5.6.7")

	sp := testpeer.OpenSpool(t, t.TempDir())
	addr := startHarness(t, queueConfig(t, u.Addr), Options{Spool: sp}).addr
	c = dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<alarms@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<用户@例子.广告>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q; want 250 (queued)", last)
	}
	dsn := u.WaitMessages(t, 1, 10*time.Second)[0]
	if dsn.From != "" || dsn.To[0] != "alarms@plant.example.com" || !strings.Contains(string(dsn.Data), "Status: 5.6.7") {
		t.Fatalf("upstream got %s → %q:\n%s\nwant a bounce with Status: 5.6.7 to the sender", dsn.From, dsn.To, dsn.Data)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })

	// Declared with ASCII addresses: queue mode delivers it without
	// SMTPUTF8 (a client that declares it on every message, such as
	// Jakarta Mail with mail.mime.allowutf8, still gets its mail through).
	c.must("MAIL FROM:<alarms@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	if code, last := c.data("Subject: St\xc3\xb6rung\r\n\r\nPumpe 3\r\n"); code != 250 {
		t.Fatalf("DATA → %q; want 250 (queued)", last)
	}
	got := u.WaitMessages(t, 2, 10*time.Second)[1]
	if got.From != "alarms@plant.example.com" || got.To[0] != "ops@example.com" || got.UTF8 || !strings.Contains(string(got.Data), "Pumpe 3") {
		t.Fatalf("upstream got %s → %q (SMTPUTF8 %v):\n%s\nwant the message itself, without SMTPUTF8", got.From, got.To, got.UTF8, got.Data)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })
}

// TestSMTPUTF8DirectDeclaredASCII: in direct mode a declared SMTPUTF8 with
// ASCII addresses goes to an upstream without SMTPUTF8 without the
// parameter, as from the queue (Jakarta Mail with mail.mime.allowutf8
// declares it on every message); in such a transaction a non-ASCII
// recipient gets 553 5.6.7 from relay while the ASCII one gets the
// message, and a non-ASCII sender is still refused. An upstream that
// offers SMTPUTF8 gets it, and both recipients.
func TestSMTPUTF8DirectDeclaredASCII(t *testing.T) {
	const utf8Msg = "From: alarms@plant.example.com\r\nTo: ops@example.com\r\nSubject: St\xc3\xb6rung Pumpe 3\r\n\r\nPumpe 3 gest\xc3\xb6rt.\r\n"
	without := testpeer.StartUpstream(t, testpeer.UpstreamOptions{NoSMTPUTF8: true})
	c := dial(t, startHarness(t, upstreamConfig(t, without, `default_profile = "up"`), Options{}).addr)
	c.ehlo()
	c.must("MAIL FROM:<alarms@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	if code, last := c.data(utf8Msg); code != 250 {
		t.Fatalf("declared SMTPUTF8, ASCII addresses: DATA → %q; want 250 (delivered)", last)
	}
	got := without.WaitMessages(t, 1, 10*time.Second)[0]
	if got.From != "alarms@plant.example.com" || len(got.To) != 1 || got.To[0] != "ops@example.com" || got.UTF8 || !strings.Contains(string(got.Data), "Pumpe 3 gest\xc3\xb6rt.") {
		t.Fatalf("upstream got %s → %q (SMTPUTF8 %v):\n%s\nwant the message itself, without SMTPUTF8", got.From, got.To, got.UTF8, got.Data)
	}

	c.must("MAIL FROM:<alarms@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	// relay answers it itself: the upstream's own refusal of a non-ASCII
	// RCPT without SMTPUTF8 ("Non-ASCII address…") is never asked for.
	if last := c.must("RCPT TO:<用户@例子.广告>", 553, "5.6.7"); !strings.Contains(last, "needs SMTPUTF8") {
		t.Fatalf("non-ASCII recipient → %q; want relay's own 553 5.6.7 (needs SMTPUTF8), not the upstream's", last)
	}
	if code, last := c.data(utf8Msg); code != 250 {
		t.Fatalf("one ASCII and one non-ASCII recipient: DATA → %q; want 250 (delivered to the ASCII one)", last)
	}
	got = without.WaitMessages(t, 2, 10*time.Second)[1]
	if len(got.To) != 1 || got.To[0] != "ops@example.com" || got.UTF8 {
		t.Fatalf("upstream got %s → %q (SMTPUTF8 %v); want the message for ops@example.com alone, without SMTPUTF8", got.From, got.To, got.UTF8)
	}

	c.must("MAIL FROM:<störung@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<ops@example.com>", 553, "5.6.7")
	c.must("RSET", 250, "")

	with := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	c = dial(t, startHarness(t, upstreamConfig(t, with, `default_profile = "up"`), Options{}).addr)
	c.ehlo()
	c.must("MAIL FROM:<alarms@plant.example.com> SMTPUTF8", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	c.must("RCPT TO:<用户@例子.广告>", 250, "")
	if code, last := c.data(utf8Msg); code != 250 {
		t.Fatalf("upstream with SMTPUTF8: DATA → %q; want 250", last)
	}
	got = with.WaitMessages(t, 1, 10*time.Second)[0]
	if len(got.To) != 2 || got.To[1] != "用户@例子.广告" || !got.UTF8 {
		t.Fatalf("upstream with SMTPUTF8 got %s → %q (SMTPUTF8 %v); want both recipients, with SMTPUTF8", got.From, got.To, got.UTF8)
	}
}

// TestBodyTypePassedOn: BODY= goes upstream as the client declared it at
// MAIL (RFC 6152), in direct and in queue mode: 7BIT, 8BITMIME or none.
func TestBodyTypePassedOn(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	direct := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	queued := startHarness(t, queueConfig(t, u.Addr), Options{Spool: testpeer.OpenSpool(t, t.TempDir())}).addr
	n := 0
	for _, addr := range []string{direct.addr, queued} {
		for _, body := range []string{"", "7BIT", "8BITMIME"} {
			c := dial(t, addr)
			c.ehlo()
			param := ""
			if body != "" {
				param = " BODY=" + body
			}
			c.must("MAIL FROM:<alarms@plant.example.com>"+param, 250, "")
			c.must("RCPT TO:<ops@example.com>", 250, "")
			if code, last := c.data(msgBody); code != 250 {
				t.Fatalf("DATA → %q", last)
			}
			c.cmd("QUIT")
			n++
			if got := u.WaitMessages(t, n, 10*time.Second)[n-1].Body; got != body {
				t.Errorf("MAIL FROM with %q: upstream got BODY=%q; want %q", param, got, body)
			}
		}
	}
}

// TestEightBitMIMEToUpstreamWithout: a message declared BODY=8BITMIME for
// an upstream that does not offer 8BITMIME will never go through as it is,
// and relay does not convert it (RFC 6152 §3): direct mode answers 554
// 5.6.3 at once, queue mode bounces it to the sender. The same 8-bit
// message without BODY=, as legacy clients send it, is delivered as it is.
// The upstream is go-smtp with 8BITMIME taken out of its EHLO reply
// (UpstreamOptions.Hide); package upstream's test uses smtp-sink -8.
func TestEightBitMIMEToUpstreamWithout(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Hide: []string{"8BITMIME"}})
	const eightBit = "From: alarms@plant.example.com\r\nTo: ops@example.com\r\nSubject: Pumpe 3\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Pumpe 3 gest\xf6rt, Druck \xfcber Grenzwert.\r\n"

	direct := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	c := dial(t, direct.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com> BODY=8BITMIME", 250, "")
	if last := c.must("RCPT TO:<ops@example.com>", 554, "5.6.3"); !strings.Contains(last, "8BITMIME") {
		t.Errorf("RCPT → %q; want the reply to name 8BITMIME", last)
	}

	sp := testpeer.OpenSpool(t, t.TempDir())
	addr := startHarness(t, queueConfig(t, u.Addr), Options{Spool: sp}).addr
	c = dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<alarms@plant.example.com> BODY=8BITMIME", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	if code, last := c.data(eightBit); code != 250 {
		t.Fatalf("DATA → %q; want 250 (queued)", last)
	}
	dsn := u.WaitMessages(t, 1, 10*time.Second)[0]
	if dsn.From != "" || dsn.To[0] != "alarms@plant.example.com" || !strings.Contains(string(dsn.Data), "Status: 5.6.3") {
		t.Fatalf("upstream got %s → %q:\n%s\nwant a bounce with Status: 5.6.3 to the sender", dsn.From, dsn.To, dsn.Data)
	}
	testpeer.WaitFor(t, "the spool to empty", 5*time.Second, func() bool { return sp.Len() == 0 })

	c.must("MAIL FROM:<alarms@plant.example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	if code, last := c.data(eightBit); code != 250 {
		t.Fatalf("DATA → %q; want 250 (queued)", last)
	}
	got := u.WaitMessages(t, 2, 10*time.Second)[1]
	if got.From != "alarms@plant.example.com" || got.Body != "" || !strings.Contains(string(got.Data), "gest\xf6rt, Druck \xfcber") {
		t.Errorf("upstream got %s, BODY=%q:\n%q\nwant the undeclared 8-bit message as it is, without BODY=", got.From, got.Body, got.Data)
	}
}

// TestSMTPUTF8PassedOn: SMTPUTF8 goes upstream when the client declared it
// at MAIL (RFC 6531 §3.4), also with ASCII addresses (the header fields
// may hold UTF-8), in direct and in queue mode; the queue used to decide
// from the addresses alone. Without the declaration it is left out.
func TestSMTPUTF8PassedOn(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	direct := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	queued := startHarness(t, queueConfig(t, u.Addr), Options{Spool: testpeer.OpenSpool(t, t.TempDir())}).addr
	const utf8Headers = "From: alarms@plant.example.com\r\nTo: ops@example.com\r\nSubject: Störung Pumpe 3\r\n\r\nPumpe 3 gestört.\r\n"
	n := 0
	for _, addr := range []string{direct.addr, queued} {
		for _, declared := range []bool{true, false} {
			c := dial(t, addr)
			c.ehlo()
			param := ""
			if declared {
				param = " SMTPUTF8"
			}
			c.must("MAIL FROM:<alarms@plant.example.com>"+param, 250, "")
			c.must("RCPT TO:<ops@example.com>", 250, "")
			if code, last := c.data(utf8Headers); code != 250 {
				t.Fatalf("DATA → %q", last)
			}
			c.cmd("QUIT")
			n++
			if got := u.WaitMessages(t, n, 10*time.Second)[n-1].UTF8; got != declared {
				t.Errorf("%s, MAIL FROM with %q: upstream got SMTPUTF8 %v; want %v", map[bool]string{true: "direct", false: "queue"}[addr == direct.addr], param, got, declared)
			}
		}
	}
}
