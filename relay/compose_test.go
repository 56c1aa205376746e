package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/upstream"
)

// testEmailTransport is the transport of a plain profile to addr.
func testEmailTransport(t *testing.T, host string, port int) Transport {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf("[[profiles]]\nname = \"up\"\nhostname = %q\nport = %d\nsmtp_timeout = \"5s\"\n", host, port)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Transports(upstream.Options{}, nil)(cfg.Profile("up"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestSendTestDelivers: the test email reaches the upstream whole, with
// the body across buffer sizes, UTF-8 and long lines, and SendTest returns
// the upstream's reply to the end of DATA.
func TestSendTestDelivers(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	tr := testEmailTransport(t, u.Host, u.Port)
	line := "Grüße aus der Leitwarte, Tank 4 — " + strings.Repeat("x", 900) + "\n"
	for i, size := range []int{1, 4 << 10, 32 << 10, 64 << 10, 1 << 20, 5<<20 + 3} {
		body := strings.Repeat(line, size/len(line)+1)[:size]
		msg, err := ComposeText("Alarms <alarms@plant.example.com>", "ops@example.com", TestSubject, body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		reply, err := SendTest(context.Background(), tr, msg)
		if err != nil || reply == "" {
			t.Fatalf("SendTest of a %d-byte body = %q, %v", size, reply, err)
		}
		got := u.WaitMessages(t, i+1, 10*time.Second)[i]
		if got.From != "alarms@plant.example.com" || len(got.To) != 1 || got.To[0] != "ops@example.com" || string(got.Data) != string(msg.Data) {
			t.Fatalf("%d-byte body: the upstream got from %q to %v, %d bytes; want the %d bytes composed", size, got.From, got.To, len(got.Data), len(msg.Data))
		}
	}
}

// TestSendTestRefusals: a refused recipient is a *RecipientError with the
// upstream's reply; an upstream that is not there is another error.
func TestSendTestRefusals(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}})
	msg, err := ComposeText("alarms@plant.example.com", "nobody@example.com", TestSubject, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = SendTest(context.Background(), testEmailTransport(t, u.Host, u.Port), msg)
	var refused *RecipientError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "no such mailbox") {
		t.Errorf("SendTest to a refused recipient = %v; want a *RecipientError with the 550", err)
	}
	if len(u.Messages()) != 0 {
		t.Errorf("the upstream got %d messages; want none", len(u.Messages()))
	}

	u.Close()
	_, err = SendTest(context.Background(), testEmailTransport(t, u.Host, u.Port), msg)
	if err == nil || errors.As(err, &refused) {
		t.Errorf("SendTest to an upstream that is down = %v; want a connection error", err)
	}
}
