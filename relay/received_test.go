package relay

import (
	"strings"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestReceivedUsesLatestEHLO: RFC 5321 §4.4, the Received header names
// the client as its latest EHLO did, and a name past 255 octets is cut.
func TestReceivedUsesLatestEHLO(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	h := startHarness(t, upstreamConfig(t, u, `default_profile = "up"`), Options{})
	c := dial(t, h.addr)
	c.must("EHLO first.example", 250, "")
	normalMessage(c, "a@example.com") // EHLO client.example.com
	c.must("EHLO "+strings.Repeat("x", 1500), 250, "")
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	msgs := u.Messages()
	if len(msgs) != 2 {
		t.Fatalf("upstream got %d messages", len(msgs))
	}
	if d := string(msgs[0].Data); !strings.HasPrefix(d, "Received: from client.example.com ") {
		t.Errorf("first message: %.60q; want the latest EHLO name", d)
	}
	if d := string(msgs[1].Data); !strings.HasPrefix(d, "Received: from "+strings.Repeat("x", 255)+" ") {
		t.Errorf("second message: %.300q; want the EHLO name cut at 255 octets", d)
	}
}
