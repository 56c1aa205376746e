package testpeer

import (
	"errors"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestAuthXOAUTH2Server(t *testing.T) {
	valid := func(user, token string) error {
		if user == "u@example.com" && token == "good" {
			return nil
		}
		return errors.New("bad token")
	}
	creds := func(tok string) []byte { return []byte("user=u@example.com\x01auth=Bearer " + tok + "\x01\x01") }

	// Two-step form: empty 334, then the credentials.
	s := NewAuthXOAUTH2Server(AuthGmailStyle, valid)
	if ch, done, err := s.Next(nil); ch != nil || done || err != nil {
		t.Fatalf("Next(nil) = %q, %t, %v; want an empty challenge", ch, done, err)
	}
	if _, done, err := s.Next(creds("good")); !done || err != nil {
		t.Errorf("Next(good credentials) = %t, %v; want done", done, err)
	}

	// Inline initial response.
	s = NewAuthXOAUTH2Server(AuthGmailStyle, valid)
	if _, done, err := s.Next(creds("good")); !done || err != nil {
		t.Errorf("inline Next(good credentials) = %t, %v; want done", done, err)
	}

	// Gmail: JSON challenge, then 535 5.7.8.
	s = NewAuthXOAUTH2Server(AuthGmailStyle, valid)
	ch, done, err := s.Next(creds("bad"))
	if done || err != nil || string(ch) != `{"schemes":"Bearer","scope":"https://mail.google.com/","status":"401"}` {
		t.Fatalf("Next(bad credentials) = %q, %t, %v; want the JSON challenge", ch, done, err)
	}
	var se *smtp.SMTPError
	if _, _, err := s.Next([]byte{}); !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Errorf("Next(empty) after the challenge = %v; want 535 5.7.8", err)
	}

	// Office 365: 535 5.7.3 at once.
	s = NewAuthXOAUTH2Server(AuthOffice365Style, valid)
	if _, _, err := s.Next(creds("bad")); !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 3}) {
		t.Errorf("Office 365 style: %v; want 535 5.7.3", err)
	}

	for _, bad := range []string{"", "user=u\x01auth=Bearer t", "user=u\x01auth=Basic t\x01\x01", "auth=Bearer t\x01\x01", "user=u\x01\x01"} {
		s = NewAuthXOAUTH2Server(AuthGmailStyle, valid)
		if _, _, err := s.Next([]byte(bad)); !errors.As(err, &se) || se.Code != 501 {
			t.Errorf("Next(%q) = %v; want 501", bad, err)
		}
	}
}
