package relay

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestDirectDeliveryLogsHint: a direct delivery that Exchange refuses with
// SendAsDenied is logged with the hint, and the profile's last error
// carries it for the admin pages.
func TestDirectDeliveryLogsHint(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnData: func(testpeer.Message) error {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message"}
	}})
	h := startHarness(t, directConfig(t, u.Port), Options{})
	c := dial(t, h.addr)
	c.ehlo()
	c.must("MAIL FROM:<someone.else@example.com>", 250, "")
	c.must("RCPT TO:<ops@example.com>", 250, "")
	if code, last := c.data("Subject: x\r\n\r\nx\r\n"); code != 554 {
		t.Fatalf("DATA → %q; want the upstream's 554", last)
	}
	if logs := h.logs.String(); !strings.Contains(logs, `msg="delivery failed"`) || !strings.Contains(logs, "hint=") || !strings.Contains(logs, "Send As") {
		t.Errorf("the delivery failure is logged without the hint:\n%s", logs)
	}
	if st := h.srv.Stats("up"); !strings.Contains(st.LastErrorHint, "Send As") {
		t.Errorf("Stats(up) = %+v; want the Send As hint", st)
	}
}
