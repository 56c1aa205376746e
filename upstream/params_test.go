package upstream

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/corpus"
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

// TestEightBitMIMENotOffered: a message the client declared BODY=8BITMIME
// cannot go as it is to an upstream that does not offer 8BITMIME (RFC 6152
// §3), and relay does not convert it: a permanent 554 5.6.3 before MAIL
// FROM. The same 8-bit message without BODY=, as legacy clients send it,
// goes as it is, and so does one declared 7BIT. The upstream is Postfix's
// smtp-sink -8, which does not announce 8BITMIME (go-smtp's server always
// does).
func TestEightBitMIMENotOffered(t *testing.T) {
	sink := testpeer.StartSink(t, "-8")
	d := &recordingDialer{}
	s := newSender(t, sinkProfile(t, sink.Addr), Options{Dialer: d})
	var raw *corpus.Message
	for _, m := range corpus.All() {
		if m.Name == "raw 8-bit body" {
			raw = m
		}
	}
	if raw == nil || raw.BodyType != "8BITMIME" {
		t.Fatal("the corpus has no raw 8-bit message declared 8BITMIME")
	}

	_, err := s.Send(context.Background(), corpusMessage(raw))
	var ue *Error
	if !errors.As(err, &ue) || ue.Temporary || ue.Step != StepMail || ue.Code != 554 || ue.EnhancedCode != (smtp.EnhancedCode{5, 6, 3}) {
		t.Fatalf("Send(BODY=8BITMIME) = %v; want a permanent *Error 554 5.6.3 at MAIL FROM", err)
	}
	if r := ue.Reply(); r.Code != 554 || r.EnhancedCode != (smtp.EnhancedCode{5, 6, 3}) || !strings.Contains(r.Message, "8BITMIME") {
		t.Errorf("Reply() = %d %v %q; want 554 5.6.3 naming 8BITMIME for a client waiting in direct mode", r.Code, r.EnhancedCode, r.Message)
	}
	if w := strings.Join(d.all(), ""); strings.Contains(w, "MAIL FROM") {
		t.Errorf("the client sent MAIL FROM anyway: %q", clip(w))
	}

	legacy := corpusMessage(raw)
	legacy.BodyType = ""
	if _, err := s.Send(context.Background(), legacy); err != nil {
		t.Fatalf("Send(8-bit without BODY=) = %v; want it sent as it is", err)
	}
	seven := message("b@example.com")
	seven.BodyType = "7BIT"
	if _, err := s.Send(context.Background(), seven); err != nil {
		t.Fatalf("Send(BODY=7BIT) = %v", err)
	}
	w := strings.Join(d.all(), "")
	if strings.Contains(w, "BODY=") {
		t.Errorf("BODY= went to a server without 8BITMIME: %q", clip(w))
	}
	got := sink.Messages(t, 2, 20*time.Second)
	if len(got) != 2 {
		t.Fatalf("the sink got %d messages; want 2 (the undeclared 8-bit one and the 7BIT one)", len(got))
	}
	want := lf(corpus.Fold(raw.Want()))
	var eight []byte // the sink's files may share a modification time: found by subject
	for _, g := range got {
		if subjectOf(g) == subjectOf(want) {
			eight = g
		}
	}
	if !bytes.Equal(eight, want) {
		t.Errorf("the undeclared 8-bit message arrived changed or not at all (%d bytes, want %d, first difference at %d)", len(eight), len(want), firstDiff(eight, want))
	}
}
