package upstream

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestSMTPUTF8NotOffered: a message that needs SMTPUTF8 cannot go to an
// upstream that does not offer it, now or ever: a permanent 553 5.6.7
// (RFC 6531 §3.7.5), and the upstream gets no message. Without SMTPUTF8
// the same upstream takes an ASCII message.
func TestSMTPUTF8NotOffered(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{NoSMTPUTF8: true})
	s := newSender(t, profileFor(u), Options{})
	msg := &Message{From: "a@example.com", To: []string{"用户@例子.广告"}, Body: strings.NewReader(testBody), UTF8: true}
	_, err := s.Send(context.Background(), msg)
	var ue *Error
	if !errors.As(err, &ue) || ue.Temporary || ue.Code != 553 || ue.EnhancedCode != (smtp.EnhancedCode{5, 6, 7}) {
		t.Fatalf("Send(SMTPUTF8 message) = %v; want a permanent *Error 553 5.6.7", err)
	}
	if r := ue.Reply(); r.Code != 553 || r.EnhancedCode != (smtp.EnhancedCode{5, 6, 7}) {
		t.Errorf("Reply() = %d %v; want 553 5.6.7 for a client waiting in direct mode", r.Code, r.EnhancedCode)
	}
	if _, err := s.Send(context.Background(), message("b@example.com")); err != nil {
		t.Fatalf("Send(ASCII message) = %v", err)
	}
	if msgs := u.Messages(); len(msgs) != 1 || msgs[0].To[0] != "b@example.com" {
		t.Fatalf("upstream got %+v; want only the ASCII message", msgs)
	}
}

// TestBodyTypeAsDeclared: BODY= goes upstream as the client declared it at
// MAIL, and not at all when it declared none (RFC 6152).
func TestBodyTypeAsDeclared(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	s := newSender(t, profileFor(u), Options{})
	for i, body := range []string{"", "7BIT", "8BITMIME", ""} {
		msg := message("b@example.com")
		msg.BodyType = body
		if _, err := s.Send(context.Background(), msg); err != nil {
			t.Fatalf("Send(BodyType %q) = %v", body, err)
		}
		if got := u.Messages()[i].Body; got != body {
			t.Errorf("upstream got BODY=%q; want %q", got, body)
		}
	}
}
