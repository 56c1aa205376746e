package spool

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMailParametersKept: BODY= and SMTPUTF8 as the client declared them
// at MAIL survive the envelope line, an Update (ID.json) and a restart; an
// envelope written before the fields existed loads as "" and false, and one
// with a field this relay does not know still loads, as a relay before
// these fields loads an envelope that has them.
func TestMailParametersKept(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	ctx := context.Background()
	w, err := s.Create(ctx, &Envelope{Profile: "p", From: "a@example.com", BodyType: "8BITMIME", UTF8: true, Recipients: []Recipient{{Addr: "b@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: Grüße\r\n\r\n\xc3\xa4\r\n"))
	id, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Envelope(id)
	if err != nil || env.BodyType != "8BITMIME" || !env.UTF8 {
		t.Fatalf("Envelope = %+v, %v; want BodyType 8BITMIME and UTF8", env, err)
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	if env, err := s.Envelope(id); err != nil || env.BodyType != "8BITMIME" || !env.UTF8 {
		t.Fatalf("from the envelope line after a restart: %+v, %v; want BodyType 8BITMIME and UTF8", env, err)
	}
	env.Attempts++
	if err := s.Update(ctx, env); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	if env, err := s.Envelope(id); err != nil || env.BodyType != "8BITMIME" || !env.UTF8 {
		t.Fatalf("from ID.json after an Update and a restart: %+v, %v; want BodyType 8BITMIME and UTF8", env, err)
	}

	arrived := time.Now().UTC().Format(time.RFC3339)
	old := `{"version":3,"id":"X","profile":"p","from":"a@example.com","recipients":[{"addr":"b@example.com","state":"pending"}],"arrived":"` + arrived + `","attempts":0,"size":3}`
	if env, err := unmarshalEnvelope("X", []byte(old)); err != nil || env.BodyType != "" || env.UTF8 {
		t.Fatalf("envelope without body and smtputf8: %+v, %v; want BodyType \"\" and no UTF8", env, err)
	}
	newer := strings.Replace(old, `"attempts":0`, `"attempts":0,"a_later_field":{"x":1}`, 1)
	if _, err := unmarshalEnvelope("X", []byte(newer)); err != nil {
		t.Fatalf("envelope with a field this relay does not know: %v; want it loaded", err)
	}
	if b, err := marshalEnvelope(&Envelope{ID: "X", Profile: "p", Recipients: []Recipient{{Addr: "b@example.com"}}}); err != nil || strings.Contains(string(b), "smtputf8") {
		t.Errorf("an envelope without SMTPUTF8 is written as %s, %v; want no smtputf8 key", b, err)
	}
}
