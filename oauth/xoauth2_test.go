package oauth_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode"

	"github.com/relaymail/relay/oauth"
)

func TestXOAUTH2ClientProtocol(t *testing.T) {
	c := oauth.NewXOAUTH2Client("user@example.com", "tok")
	mech, ir, err := c.Start()
	if mech != "XOAUTH2" || ir != nil || err != nil {
		t.Fatalf("Start() = %q, %q, %v; want XOAUTH2 without an initial response", mech, ir, err)
	}
	resp, err := c.Next(nil)
	if err != nil || string(resp) != "user=user@example.com\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("Next(empty challenge) = %q, %v", resp, err)
	}
	resp, err = c.Next([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	if err != nil || resp == nil || len(resp) != 0 {
		t.Fatalf("Next(error challenge) = %q, %v; want an empty, non-nil response", resp, err)
	}
	if xe := c.ServerError(); xe == nil || xe.Status != "400" || xe.TokenRefused() {
		t.Errorf("ServerError() = %+v", xe)
	}
	if _, err := c.Next([]byte("more")); err == nil {
		t.Error("a third challenge was answered")
	}
	for _, bad := range []*oauth.XOAUTH2Client{
		oauth.NewXOAUTH2Client("", "s3cr3t"),
		oauth.NewXOAUTH2Client("a\x01b", "s3cr3t"),
		oauth.NewXOAUTH2Client("u", ""),
		oauth.NewXOAUTH2Client("u", "s3 cr3t"),
		oauth.NewXOAUTH2Client("u", "s3cr3t\r\nQUIT"),
	} {
		if _, _, err := bad.Start(); err == nil {
			t.Errorf("Start() accepted a bad user or token")
		} else if strings.Contains(err.Error(), "s3") {
			t.Errorf("Start() error %q shows the token", err)
		}
	}
}

// Real challenges, as servers send them (base64).
var realChallenges = []string{
	// Gmail, expired or revoked token.
	"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
	// Google's protocol document's example.
	base64.StdEncoding.EncodeToString([]byte(`{"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}`)),
	// Gmail, a malformed request.
	base64.StdEncoding.EncodeToString([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`)),
	// Yahoo and AOL send an error word.
	base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_request","scope":"mail-w"}`)),
}

func TestParseXOAUTH2Error(t *testing.T) {
	b, _ := base64.StdEncoding.DecodeString(realChallenges[0])
	e, err := oauth.ParseXOAUTH2Error(b)
	if err != nil || *e != (oauth.XOAUTH2Error{Status: "401", Schemes: "Bearer", Scope: "https://mail.google.com/"}) {
		t.Errorf("ParseXOAUTH2Error(Gmail) = %+v, %v", e, err)
	}
	if e, err := oauth.ParseXOAUTH2Error([]byte(`{"status":401}`)); err != nil || e.Status != "401" {
		t.Errorf("numeric status: %+v, %v", e, err)
	}
	for _, bad := range []string{"", "null", "[]", "not json", `{"status":`, strings.Repeat(" ", 5000) + "{}"} {
		if e, err := oauth.ParseXOAUTH2Error([]byte(bad)); err == nil {
			t.Errorf("ParseXOAUTH2Error(%.20q) = %+v; want an error", bad, e)
		}
	}
}

func FuzzParseXOAUTH2Error(f *testing.F) {
	for _, c := range realChallenges {
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"status":401,"schemes":["Bearer"],"scope":null}`))
	f.Add([]byte(`{"status":"4\u00001","scope":"\n"}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, challenge []byte) {
		e, err := oauth.ParseXOAUTH2Error(challenge)
		if err == nil {
			for _, s := range []string{e.Status, e.Schemes, e.Scope} {
				if len(s) > 210 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
					t.Errorf("field %q is too long or holds control characters", s)
				}
				if !unicode.IsPrint(firstRune(s)) && s != "" {
					t.Errorf("field %q starts unprintable", s)
				}
			}
			_ = e.Error()
		}
		// The client answers any second challenge with an empty line.
		c := oauth.NewXOAUTH2Client("u@example.com", "t")
		c.Start()
		c.Next(nil)
		resp, err := c.Next(challenge)
		if err != nil || resp == nil || len(resp) != 0 || c.ServerError() == nil {
			t.Fatalf("Next(%q) = %q, %v", challenge, resp, err)
		}
	})
}

func firstRune(s string) rune {
	for _, r := range s {
		return r
	}
	return 0
}
