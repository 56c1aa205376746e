package relay

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr     string
		smtputf8 bool
		want     string // "" or the enhanced code of the refusal
	}{
		{"alarms@plant.example.com", false, ""},
		{"first.last+tag@example.com", false, ""},
		{"o'brien@example.com", false, ""},
		{"a..b.@example.com", false, ""}, // legacy senders do this
		{"x@[192.0.2.1]", false, ""},
		{"x@[IPv6:2001:db8::1]", false, ""},
		{"x@plant_01.example.com", false, ""},
		{"x@localhost", false, ""},
		{"pelé@example.com", true, ""},
		{"x@bücher.example", true, ""},
		{"pelé@example.com", false, "5.6.7"},
		{"x@bücher.example", false, "5.6.7"},
		{"a\x00b@example.com", false, "5.1.7"},
		{"a\rb@example.com", false, "5.1.7"},
		{"a\x7fb@example.com", false, "5.1.7"},
		{"a\u0085b@example.com", true, "5.1.7"},
		{"\xff\xfe@example.com", true, "5.1.7"},
		{"\xff\xfe@example.com", false, "5.1.7"},
		{"a b@example.com", false, "5.1.7"},
		{"x> NOTIFY=SUCCESS@example.com", false, "5.1.7"}, // from <"x> NOTIFY=SUCCESS"@example.com>
		{"x>NOTIFY=SUCCESS@example.com", false, "5.1.7"},
		{"a@evil.example@plant.example.com", false, "5.1.7"},
		{"a,b@example.com", false, "5.1.7"},
		{"a\"b@example.com", false, "5.1.7"},
		{"a(comment)@example.com", false, "5.1.7"},
		{"a@example..com", false, "5.1.7"},
		{"a@.example.com", false, "5.1.7"},
		{"a@example.com.", false, "5.1.7"},
		{"a@exa mple.com", false, "5.1.7"},
		{"a@example.com>x", false, "5.1.7"},
		{"a@[300.1.1.1]", false, "5.1.7"},
		{"a@[IPv6:192.0.2.1]", false, "5.1.7"},
		{"a@[192.0.2.1", false, "5.1.7"},
		{"nodomain", false, "5.1.7"},
		{"@example.com", false, "5.1.7"},
	}
	for _, tt := range tests {
		for _, sender := range []bool{true, false} {
			err := checkAddress(tt.addr, tt.smtputf8, sender)
			want := tt.want
			if !sender && want == "5.1.7" {
				want = "5.1.3"
			}
			switch {
			case want == "" && err != nil:
				t.Errorf("checkAddress(%q, utf8=%v, sender=%v) = %v; want nil", tt.addr, tt.smtputf8, sender, err)
			case want != "" && (err == nil || err.Code != 553 || ec(err.EnhancedCode) != want):
				t.Errorf("checkAddress(%q, utf8=%v, sender=%v) = %v; want 553 %s", tt.addr, tt.smtputf8, sender, err, want)
			case err != nil && strings.ContainsAny(err.Message, "\x00\r\n\xff<>"):
				t.Errorf("checkAddress(%q) reply %q echoes the address", tt.addr, err.Message)
			}
		}
	}
}

func ec(c smtp.EnhancedCode) string { return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2]) }

// TestEnvelopeAddressesAreNotPassedOnMangled: go-smtp drops the quotes of
// a quoted local part, so without relay's check the addresses below would
// reach the upstream's MAIL and RCPT commands as something else than the
// client wrote, with extra ESMTP parameters or a second "@". They are
// refused with 553 and the session goes on.
func TestEnvelopeAddressesAreNotPassedOnMangled(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, s)
		return nil
	}
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		OnMail: func(from string) error { return record("MAIL " + from) },
		OnRcpt: func(to string) error { return record("RCPT " + to) },
	})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	for _, from := range []string{
		`<"x> RET=FULL"@example.com>`,
		`<"a@evil.example"@plant.example.com>`,
		"<a\x00b@example.com>",
		"<a\rRSET@example.com>",
		"<pelé@example.com>",
		"<\xff@example.com> SMTPUTF8",
	} {
		last := c.must("MAIL FROM:"+from, 553, "")
		if !strings.HasPrefix(last[4:], "5.1.7 ") && !strings.HasPrefix(last[4:], "5.6.7 ") {
			t.Errorf("MAIL FROM:%q → %q; want 553 5.1.7 or 5.6.7", from, last)
		}
	}
	c.must("MAIL FROM:<a@example.com>", 250, "")
	for _, to := range []string{
		`<"x> NOTIFY=SUCCESS ORCPT=rfc822;spy@evil.example"@example.com>`,
		`<"b@evil.example"@example.com>`,
		"<b\x00@example.com>",
		"<bü@example.com>",
	} {
		last := c.must("RCPT TO:"+to, 553, "")
		if !strings.HasPrefix(last[4:], "5.1.3 ") && !strings.HasPrefix(last[4:], "5.6.7 ") {
			t.Errorf("RCPT TO:%q → %q; want 553 5.1.3 or 5.6.7", to, last)
		}
	}
	c.must(`RCPT TO:<"plain"@example.com>`, 250, "") // needless quotes are fine
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	msgs := u.Messages()
	if len(msgs) != 1 || msgs[0].From != "a@example.com" || strings.Join(msgs[0].To, ",") != "plain@example.com" {
		t.Fatalf("upstream got %+v; want one message from a@example.com to plain@example.com", msgs)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "|") != "MAIL a@example.com|RCPT plain@example.com" {
		t.Fatalf("upstream saw %q", seen)
	}
}

// TestNestedMAIL: RFC 5321 §4.1.4, MAIL inside a transaction is refused;
// RSET ends the transaction.
func TestNestedMAIL(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	c.must("MAIL FROM:<other@example.com>", 503, "5.5.1")
	c.must("RSET", 250, "")
	c.must("MAIL FROM:<other@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	if msgs := u.Messages(); len(msgs) != 1 || msgs[0].From != "other@example.com" {
		t.Fatalf("upstream got %+v", msgs)
	}
}
