package relay

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relaymail/relay/internal/testpeer"
)

// hostileCase is one hostile input against a running server.
type hostileCase struct {
	name string
	// untrusted runs the case on the server whose allow_unauthenticated
	// is empty; the others run where 127.0.0.1 may send without AUTH.
	untrusted bool
	// setup is sent one command at a time before the input, each answered
	// with a code below 400.
	setup []string
	// input is written in one write.
	input string
	// want are the replies to input, in order: a code, or a code and an
	// enhanced code ("501 5.5.2"); a multi-line reply counts once.
	want []string
	// closed: the server closes the connection after these replies.
	closed bool
	// then is written after the replies to input, in one write, and
	// thenWant are its replies (a long line must not share a read with
	// what follows: go-smtp drops the whole read).
	then     string
	thenWant []string
	// delivers is how many messages the input itself hands upstream.
	delivers int
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func times(s string, n int) string { return strings.Repeat(s, n) }

func repeatReply(r string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = r
	}
	return out
}

const (
	goodSender = "MAIL FROM:<normal@plant.example.com>"
	goodRcpt   = "RCPT TO:<ops@example.com>"
	hostileMax = 65536 // max_message_bytes of the suite's servers
)

var (
	ehlo       = []string{"EHLO hostile.example"}
	inMail     = []string{"EHLO hostile.example", goodSender}
	inRcpt     = []string{"EHLO hostile.example", goodSender, goodRcpt}
	loggedIn   = []string{"EHLO hostile.example", "AUTH PLAIN " + b64("\x00app\x00app-pw")}
	bigBody    = "Subject: big\r\n\r\n" + times("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq\r\n", 1100) // 72 kB
	bigHeader  = "Subject: big header\r\n" + times("X-Filler: "+times("h", 90)+"\r\n", 60) + "\r\nbody\r\n"
	endlessHdr = times("X-Endless: "+times("e", 100)+"\r\n", 80) // no empty line, 9 kB
)

func hostileCases() []hostileCase {
	return []hostileCase{
		// Commands that are not commands.
		{name: "unknown command", input: "FROB\r\n", want: []string{"500 5.5.2"}},
		{name: "unknown long command", input: "XYZZY plugh\r\n", want: []string{"501 5.5.2"}},
		{name: "three-letter command", input: "FOO\r\n", want: []string{"501 5.5.2"}},
		{name: "five-letter command", input: "NOOPS\r\n", want: []string{"501 5.5.2"}},
		{name: "empty line", input: "\r\n", want: []string{"500 5.5.2"}},
		{name: "NUL in the verb", input: "N\x00OP\r\n", want: []string{"500 5.5.2"}},
		{name: "verb glued to its argument", input: "MAIL:FROM:<a@plant.example.com>\r\n", want: []string{"501 5.5.2"}},
		{name: "bare CR inside a command line", input: "NOOP\rRSET\r\n", want: []string{"501 5.5.2"}},
		{name: "bare LF command ending", input: "NOOP\n", want: []string{"250 2.0.0"}},
		{name: "invalid UTF-8 command", input: "\xff\xfe\xfd\xfc\r\n", want: []string{"500 5.5.2"}},
		{name: "four errors in a row close", input: "XYZ1\r\nXYZ2\r\nXYZ3\r\nXYZ4\r\n", want: []string{"500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.1"}, closed: true},
		{name: "command line past 2000 octets", input: "NOOP " + times("x", 2100) + "\r\n", want: []string{"500 5.4.0"}, closed: true},
		{name: "4000 octets without a line end", input: times("A", 4000), want: []string{"500 5.4.0"}, closed: true},
		{name: "not implemented: EXPN", input: "EXPN staff\r\n", want: []string{"502 5.5.1"}},
		{name: "not implemented: HELP", input: "HELP\r\n", want: []string{"502 5.5.1"}},
		{name: "not implemented: TURN", input: "TURN\r\n", want: []string{"502 5.5.1"}},
		{name: "VRFY reveals nothing", input: "VRFY root\r\n", want: []string{"252 2.5.0"}},
		{name: "LHLO on an SMTP server", input: "LHLO x\r\n", want: []string{"500 5.5.1"}},
		{name: "HELO without a domain", input: "HELO\r\n", want: []string{"501 5.5.2"}},
		{name: "EHLO with NUL and invalid UTF-8", input: "EHLO \x00\xff\r\n", want: []string{"250"}},
		{name: "EHLO of 1990 octets, then a message", input: "EHLO " + times("h", 1990) + "\r\n", want: []string{"250"},
			then: goodSender + "\r\n" + goodRcpt + "\r\nDATA\r\n" + msgBody + ".\r\n", thenWant: []string{"250", "250", "354", "250"}, delivers: 1},

		// Commands out of order.
		{name: "MAIL before EHLO", input: goodSender + "\r\n", want: []string{"502 5.5.1"}},
		{name: "RCPT before MAIL", setup: ehlo, input: goodRcpt + "\r\n", want: []string{"502 5.5.1"}},
		{name: "DATA before MAIL", setup: ehlo, input: "DATA\r\n", want: []string{"502 5.5.1"}},
		{name: "DATA without RCPT", setup: inMail, input: "DATA\r\n", want: []string{"502 5.5.1"}},
		{name: "nested MAIL", setup: inRcpt, input: "MAIL FROM:<other@plant.example.com>\r\n", want: []string{"503 5.5.1"}},
		{name: "DATA with an argument", setup: inRcpt, input: "DATA now\r\n", want: []string{"501 5.5.4"}},
		{name: "BDAT before MAIL", setup: ehlo, input: "BDAT 5 LAST\r\nhello", want: []string{"502 5.5.1"}},
		{name: "BDAT with a bad size", setup: inRcpt, input: "BDAT many\r\n", want: []string{"501 5.5.4"}},
		{name: "AUTH before EHLO", input: "AUTH PLAIN " + b64("\x00app\x00app-pw") + "\r\n", want: []string{"502 5.5.1"}},
		{name: "AUTH inside a transaction", setup: inMail, input: "AUTH PLAIN " + b64("\x00app\x00app-pw") + "\r\n", want: []string{"503 5.5.1"}},
		{name: "AUTH twice", setup: loggedIn, input: "AUTH PLAIN " + b64("\x00app\x00app-pw") + "\r\n", want: []string{"503 5.5.1"}},
		{name: "STARTTLS without a certificate", setup: ehlo, input: "STARTTLS\r\n", want: []string{"502 5.5.1"}},
		{name: "STARTTLS with trailing garbage", input: "STARTTLSXYZ\r\n", want: []string{"502 5.5.1"}},

		// AUTH.
		{name: "AUTH without a mechanism", setup: ehlo, input: "AUTH\r\n", want: []string{"502 5.5.4"}},
		{name: "AUTH with an unknown mechanism", setup: ehlo, input: "AUTH CRAM-MD5\r\n", want: []string{"504 5.7.4"}},
		// RFC 4954 §4 wants 501 5.5.2; go-smtp decodes base64 itself and
		// answers 454 4.7.0 before relay sees the response.
		{name: "AUTH with garbage base64", setup: ehlo, input: "AUTH PLAIN !!!not-base64!!!\r\n", want: []string{"454 4.7.0"}},
		{name: "AUTH LOGIN with a garbage base64 line", setup: ehlo, input: "AUTH LOGIN\r\n%%%%\r\n", want: []string{"334", "454 4.7.0"}},
		{name: "AUTH cancelled with *", setup: ehlo, input: "AUTH LOGIN\r\n*\r\n", want: []string{"334", "501 5.0.0"}},
		{name: "AUTH PLAIN without NUL separators", setup: ehlo, input: "AUTH PLAIN " + b64("app app-pw") + "\r\n", want: []string{"501 5.5.2"}},
		{name: "AUTH PLAIN with an empty response", setup: ehlo, input: "AUTH PLAIN =\r\n", want: []string{"501 5.5.2"}},
		{name: "AUTH with a wrong password", setup: ehlo, input: "AUTH PLAIN " + b64("\x00app\x00guess") + "\r\n", want: []string{"535 5.7.8"}},
		{name: "AUTH as an unknown user", setup: ehlo, input: "AUTH PLAIN " + b64("\x00root\x00app-pw") + "\r\n", want: []string{"535 5.7.8"}},
		{name: "AUTH as another identity", setup: ehlo, input: "AUTH PLAIN " + b64("admin\x00app\x00app-pw") + "\r\n", want: []string{"535 5.7.8"}},
		{name: "AUTH with invalid UTF-8 in the user", setup: ehlo, input: "AUTH PLAIN " + b64("\x00\xff\xfeapp\x00app-pw") + "\r\n", want: []string{"535 5.7.8"}},
		{name: "AUTH with a 1400-octet user", setup: ehlo, input: "AUTH PLAIN " + b64("\x00"+times("u", 1400)+"\x00pw") + "\r\n", want: []string{"535 5.7.8"}},
		{name: "AUTH LOGIN line past 2000 octets", setup: []string{"EHLO hostile.example", "AUTH LOGIN"}, input: times("Q", 2100) + "\r\n", want: []string{"500 5.4.0"}, closed: true},

		// MAIL FROM.
		{name: "MAIL without angle brackets or @", setup: ehlo, input: "MAIL FROM:foo\r\n", want: []string{"501 5.5.2"}},
		{name: "MAIL without the colon", setup: ehlo, input: "MAIL FROM <a@plant.example.com>\r\n", want: []string{"501 5.5.2"}},
		{name: "NUL in the sender", setup: ehlo, input: "MAIL FROM:<a\x00b@plant.example.com>\r\n", want: []string{"553 5.1.7"}},
		{name: "bare CR in the sender", setup: ehlo, input: "MAIL FROM:<a\rRSET@plant.example.com>\r\n", want: []string{"553 5.1.7"}},
		{name: "invalid UTF-8 in the sender", setup: ehlo, input: "MAIL FROM:<\xff\xfe@plant.example.com> SMTPUTF8\r\n", want: []string{"553 5.1.7"}},
		{name: "non-ASCII sender without SMTPUTF8", setup: ehlo, input: "MAIL FROM:<pelé@plant.example.com>\r\n", want: []string{"553 5.6.7"}},
		{name: "quoted sender hiding a parameter", setup: ehlo, input: `MAIL FROM:<"x> RET=FULL"@plant.example.com>` + "\r\n", want: []string{"553 5.1.7"}},
		{name: "quoted sender hiding a second @", setup: ehlo, input: `MAIL FROM:<"ceo@attacker.example"@plant.example.com>` + "\r\n", want: []string{"553 5.1.7"}},
		{name: "sender of 1900 octets", setup: ehlo, input: "MAIL FROM:<" + times("a", 1900) + "@plant.example.com>\r\n", want: []string{"250"}},
		{name: "SIZE that is not a number", setup: ehlo, input: goodSender + " SIZE=lots\r\n", want: []string{"501 5.5.4"}},
		{name: "SIZE past 32 bits", setup: ehlo, input: goodSender + " SIZE=99999999999\r\n", want: []string{"501 5.5.4"}},
		{name: "SIZE past max_message_bytes", setup: ehlo, input: goodSender + " SIZE=70000\r\n", want: []string{"552 5.3.4"}},
		{name: "unknown MAIL parameter", setup: ehlo, input: goodSender + " XFORWARD=1\r\n", want: []string{"500 5.5.4"}},
		{name: "BODY=BINARYMIME", setup: ehlo, input: goodSender + " BODY=BINARYMIME\r\n", want: []string{"504 5.5.4"}},
		{name: "sender with no route", setup: ehlo, input: "MAIL FROM:<evil@attacker.example>\r\n", want: []string{"550 5.7.1"}},
		{name: "null sender with no route", setup: ehlo, input: "MAIL FROM:<>\r\n", want: []string{"550 5.7.1"}},

		// RCPT TO.
		{name: "NUL in a recipient", setup: inMail, input: "RCPT TO:<b\x00@example.com>\r\n", want: []string{"553 5.1.3"}},
		{name: "non-ASCII recipient without SMTPUTF8", setup: inMail, input: "RCPT TO:<bü@example.com>\r\n", want: []string{"553 5.6.7"}},
		{name: "quoted recipient hiding a parameter", setup: inMail, input: `RCPT TO:<"x> NOTIFY=SUCCESS ORCPT=rfc822;spy@attacker.example"@example.com>` + "\r\n", want: []string{"553 5.1.3"}},
		{name: "empty recipient", setup: inMail, input: "RCPT TO:<>\r\n", want: []string{"501 5.5.2"}},
		{name: "recipient without a domain", setup: inMail, input: "RCPT TO:<postmaster>\r\n", want: []string{"501 5.5.2"}},
		{name: "recipient of 1900 octets, then a message", setup: inMail, input: "RCPT TO:<" + times("r", 1900) + "@example.com>\r\n", want: []string{"250"},
			then: "DATA\r\n" + msgBody + ".\r\n", thenWant: []string{"354", "250"}, delivers: 1},
		{name: "source route is ignored", setup: inMail, input: "RCPT TO:<@hop.example:ops@example.com>\r\n", want: []string{"250"}},
		{name: "recipients past max_recipients", setup: inMail, input: times(goodRcpt+"\r\n", 7), want: append(repeatReply("250", 5), "452 4.5.3", "452 4.5.3")},

		// DATA and BDAT.
		{name: "message past max_message_bytes", setup: inRcpt, input: "DATA\r\n" + bigBody + ".\r\n", want: []string{"354", "552 5.3.4"}},
		{name: "message past max_message_bytes after SIZE=10", setup: []string{"EHLO hostile.example", goodSender + " SIZE=10", goodRcpt}, input: "DATA\r\n" + bigBody + ".\r\n", want: []string{"354", "552 5.3.4"}},
		{name: "header section past max_header_bytes", setup: inRcpt, input: "DATA\r\n" + bigHeader + ".\r\n", want: []string{"354", "552 5.3.4"}},
		{name: "header section that never ends", setup: inRcpt, input: "DATA\r\n" + endlessHdr + ".\r\n", want: []string{"354", "552 5.3.4"}},
		{name: "smuggling with <LF>.<LF>", setup: inRcpt, input: "DATA\r\nSubject: s\r\n\r\nx\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\n.\r\n", want: []string{"354", "250"}, delivers: 1},
		{name: "smuggling with <CR>.<CR>", setup: inRcpt, input: "DATA\r\nSubject: s\r\n\r\nx\r.\rMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\n.\r\n", want: []string{"354", "250"}, delivers: 1},
		{name: "BDAT past max_message_bytes", setup: inRcpt, input: fmt.Sprintf("BDAT %d LAST\r\n", len(bigBody)) + bigBody, want: []string{"552 5.3.4"}},
		{name: "BDAT holding <CRLF>.<CRLF> and commands", setup: inRcpt, input: "BDAT 96 LAST\r\n" + fmt.Sprintf("%-96s", "Subject: b\r\n\r\nx\r\n.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\n"), want: []string{"250"}, delivers: 1},

		// Pipelining.
		{name: "a thousand NOOPs in one write", input: times("NOOP\r\n", 1000), want: repeatReply("250 2.0.0", 1000)},
		{name: "a thousand RCPTs in one write", setup: inMail, input: times(goodRcpt+"\r\n", 1000), want: append(repeatReply("250", 5), repeatReply("452 4.5.3", 995)...)},
		{name: "a transaction and garbage in one write", input: "EHLO p\r\n" + goodSender + "\r\n" + goodRcpt + "\r\nDATA\r\n" + msgBody + ".\r\nFROB\r\n", want: []string{"250", "250", "250", "354", "250", "500 5.5.2"}, delivers: 1},
		{name: "QUIT", input: "QUIT\r\nNOOP\r\n", want: []string{"221 2.0.0"}, closed: true},

		// Where 127.0.0.1 is not trusted.
		{name: "untrusted: MAIL without AUTH", untrusted: true, setup: ehlo, input: goodSender + "\r\n", want: []string{"530 5.7.0"}},
		{name: "untrusted: MAIL after a failed AUTH", untrusted: true, setup: ehlo, input: "AUTH PLAIN " + b64("\x00app\x00guess") + "\r\n" + goodSender + "\r\n", want: []string{"535 5.7.8", "530 5.7.0"}},
		{name: "untrusted: sender the user may not use", untrusted: true, setup: loggedIn, input: "MAIL FROM:<ceo@example.com>\r\n", want: []string{"550 5.7.1"}},
		{name: "untrusted: quoted sender to pass allowed_senders", untrusted: true, setup: loggedIn, input: `MAIL FROM:<"ceo@example.com"@plant.example.com>` + "\r\n", want: []string{"553 5.1.7"}},
		{name: "untrusted: null sender past allowed_senders", untrusted: true, setup: loggedIn, input: "MAIL FROM:<>\r\n", want: []string{"550 5.7.1"}},
	}
}

func hostileConfig(t *testing.T, u *testpeer.Upstream, networks string) string {
	return fmt.Sprintf(`
[server]
data_dir = %q
allow_unauthenticated = %s
max_recipients = 5
max_message_bytes = %d
max_header_bytes = 4096
read_timeout = "10s"

[[users]]
name = "app"
password_hash = %q
profile = "up"
allowed_senders = ["*@plant.example.com"]

[[routes]]
sender = "*@plant.example.com"
profile = "up"

[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = %d
delivery = "direct"
`, t.TempDir(), networks, hostileMax, hash(t, "app-pw"), u.Port)
}

// TestHostileInputs: each hostile input gets its reply codes and enhanced
// codes, and the server still serves a normal message afterwards: on the
// same connection when it stays open, and on a new one in any case. The
// upstream gets exactly the messages that should reach it, and none from
// or to the attacker's addresses.
func TestHostileInputs(t *testing.T) {
	cases := hostileCases()
	if len(cases) < 50 {
		t.Fatalf("only %d hostile inputs", len(cases))
	}
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	clock := newFakeClock() // AUTH failures are throttled without waiting
	trusted := startHarness(t, hostileConfig(t, u, `["127.0.0.0/8"]`), clock.options())
	untrusted := startHarness(t, hostileConfig(t, u, `[]`), clock.options())
	runHostile(t, cases, u, func(t *testing.T, untrust bool) *client {
		if untrust {
			return dial(t, untrusted.addr)
		}
		return dial(t, trusted.addr)
	})
}

// TestHostileInputsAfterSTARTTLS: inside TLS the same hostile inputs get
// the same replies, and the same messages reach the upstream: relay's TLS
// lies beneath its line gate (starttls.go). Only STARTTLS itself is
// answered differently there.
func TestHostileInputsAfterSTARTTLS(t *testing.T) {
	cases := hostileCases()
	for i, tc := range cases {
		switch tc.name {
		case "STARTTLS without a certificate":
			cases[i].want = []string{"503 5.5.1"} // inside TLS already
		case "STARTTLS with trailing garbage":
			cases[i].want = []string{"501 5.5.4"} // RFC 3207 §4: no parameters
		}
	}
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	clock := newFakeClock()
	pki := testpeer.TestPKI(t)
	_, certFile, keyFile := pki.Files(t)
	withCert := func(cfg string) string {
		return strings.Replace(cfg, "[server]\n", fmt.Sprintf("[server]\ntls_cert_file = %q\ntls_key_file = %q\n", certFile, keyFile), 1)
	}
	trusted := startHarness(t, withCert(hostileConfig(t, u, `["127.0.0.0/8"]`)), clock.options())
	untrusted := startHarness(t, withCert(hostileConfig(t, u, `[]`)), clock.options())
	runHostile(t, cases, u, func(t *testing.T, untrust bool) *client {
		h := trusted
		if untrust {
			h = untrusted
		}
		c := dial(t, h.addr)
		c.ehlo()
		c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
		return c
	})
}

// runHostile runs the cases against servers that deliver to u, on
// connections that connect opens (to the untrusted server or not).
func runHostile(t *testing.T, cases []hostileCase, u *testpeer.Upstream, connect func(t *testing.T, untrusted bool) *client) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(u.Messages())
			c := connect(t, tc.untrusted)
			for _, cmd := range tc.setup {
				c.send(cmd)
				if code, lines := c.reply(); code >= 400 {
					t.Fatalf("setup %q → %q", cmd, lines)
				}
			}
			if _, err := c.conn.Write([]byte(tc.input)); err != nil {
				t.Fatalf("write: %v", err)
			}
			expectReplies(t, c, tc.want)
			if tc.then != "" {
				c.conn.Write([]byte(tc.then))
				expectReplies(t, c, tc.thenWant)
			}
			sent := tc.delivers
			if tc.closed {
				expectClosed(t, c)
			} else {
				c.must("RSET", 250, "2.0.0")
				hostileNormal(c, tc.untrusted)
				sent++
			}
			hostileNormal(connect(t, tc.untrusted), tc.untrusted)
			sent++

			msgs := u.Messages()[before:]
			if len(msgs) != sent {
				t.Fatalf("upstream got %d messages; want %d", len(msgs), sent)
			}
			for _, m := range msgs {
				if m.From != "normal@plant.example.com" || len(m.To) != 1 || strings.Contains(m.To[0], "victim") || strings.Contains(m.To[0], "attacker") {
					t.Errorf("upstream got a message %s → %v", m.From, m.To)
				}
				if at := bareLineEnding(string(m.Data)); at >= 0 {
					t.Errorf("upstream got a bare line ending at %d", at)
				}
				// The client's lines are short; relay's must be too (RFC
				// 5322 §2.1.1).
				for _, line := range strings.Split(string(m.Data), "\r\n") {
					if len(line) > 998 {
						t.Errorf("upstream got a line of %d octets: %.80q…", len(line), line)
					}
				}
			}
		})
	}
}

func expectReplies(t *testing.T, c *client, want []string) {
	t.Helper()
	for i, w := range want {
		code, lines := c.reply()
		if !replyMatches(code, lines[len(lines)-1], w) {
			t.Fatalf("reply %d: %q; want %s", i+1, lines, w)
		}
		if bad := malformedReply(lines); bad != "" {
			t.Fatalf("reply %d is malformed: %s", i+1, bad)
		}
	}
}

// hostileNormal sends a normal message, logging in first where the
// server demands it (a case may have logged in already).
func hostileNormal(c *client, login bool) {
	c.t.Helper()
	c.ehlo()
	if login {
		if code, last := c.cmd("AUTH PLAIN " + b64("\x00app\x00app-pw")); code != 235 && code != 503 {
			c.t.Fatalf("normal message: AUTH → %q", last)
		}
	}
	c.must(goodSender, 250, "2.0.0")
	c.must(goodRcpt, 250, "2.0.0")
	if code, last := c.data(msgBody); code != 250 {
		c.t.Fatalf("normal message: DATA → %q; want 250", last)
	}
}

func replyMatches(code int, last, want string) bool {
	wantCode, wantEnh, _ := strings.Cut(want, " ")
	if fmt.Sprint(code) != wantCode {
		return false
	}
	return wantEnh == "" || strings.HasPrefix(last, wantCode+" "+wantEnh+" ")
}

// malformedReply checks the form of a reply (RFC 5321 §4.2): three digits
// and a hyphen on every line but the last, a space on the last, and an
// enhanced code (RFC 2034) on the last line of a 2xx, 4xx or 5xx reply
// other than the greeting and EHLO; it returns what is wrong, or "". Line
// length is not checked: go-smtp echoes the client's EHLO name and
// sender, so a client that sends 1900 octets gets them back, past RFC 5321
// §4.5.3.1.5's 512.
func malformedReply(lines []string) string {
	for i, l := range lines {
		if len(l) < 3 || strings.Trim(l[:3], "0123456789") != "" || l[0] < '2' || l[0] > '5' {
			return fmt.Sprintf("line %q has no reply code", l)
		}
		sep := byte(' ')
		if i < len(lines)-1 {
			sep = '-'
		}
		if len(l) > 3 && l[3] != sep {
			return fmt.Sprintf("line %q: want %q after the code", l, sep)
		}
	}
	last := lines[len(lines)-1]
	if c := last[0]; (c == '2' || c == '4' || c == '5') && len(lines) == 1 && !strings.HasPrefix(last, "220 ") && !strings.HasPrefix(last, "250 Hello") {
		f := strings.Fields(last)
		if len(f) < 2 || strings.Count(f[1], ".") != 2 || f[1][0] != c {
			return fmt.Sprintf("%q has no enhanced code of its class", last)
		}
	}
	return ""
}

// expectClosed fails unless the server closes the connection without
// saying anything more.
func expectClosed(t *testing.T, c *client) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the server did not close the connection: %v (after %q)", err, rest)
	}
	if len(rest) > 0 {
		t.Fatalf("the server said %q before closing", rest)
	}
}

// TestSTARTTLSCommandInjection: commands pipelined behind STARTTLS in the
// same packet are thrown away with the plaintext, not run inside TLS
// (CVE-2011-0411).
func TestSTARTTLSCommandInjection(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	pki := testpeer.TestPKI(t)
	_, certFile, keyFile := pki.Files(t)
	h := startHarness(t, upstreamConfig(t, u, fmt.Sprintf(`default_profile = "up"
tls_cert_file = %q
tls_key_file = %q`, certFile, keyFile)), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.send("STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>")
	c.expect(220)
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	// The first reply inside TLS must be the one to our NOOP.
	if last := c.must("NOOP", 250, "2.0.0"); !strings.Contains(last, "nothing") {
		t.Fatalf("first reply inside TLS: %q", last)
	}
	c.must("RCPT TO:<ops@example.com>", 502, "5.5.1") // no MAIL was run
	normalMessage(c, "app@example.com")
	if msgs := u.Messages(); len(msgs) != 1 || msgs[0].From != "app@example.com" {
		t.Fatalf("upstream got %+v", msgs)
	}
}
