package spool

import (
	"context"
	"testing"
	"time"
)

// TestBodyTypeKept: BODY= as the client declared it survives the envelope
// line, an Update (ID.json) and a restart; an envelope written before the
// field existed loads as "".
func TestBodyTypeKept(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	ctx := context.Background()
	w, err := s.Create(ctx, &Envelope{Profile: "p", From: "a@example.com", BodyType: "8BITMIME", Recipients: []Recipient{{Addr: "b@example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: x\r\n\r\n\xe4\r\n"))
	id, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Envelope(id)
	if err != nil || env.BodyType != "8BITMIME" {
		t.Fatalf("Envelope = %+v, %v; want BodyType 8BITMIME", env, err)
	}
	env.Attempts++
	if err := s.Update(ctx, env); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openSpool(t, dir, Options{})
	if env, err := s.Envelope(id); err != nil || env.BodyType != "8BITMIME" {
		t.Fatalf("after Update and a restart: %+v, %v; want BodyType 8BITMIME", env, err)
	}

	old := `{"version":3,"id":"X","profile":"p","from":"a@example.com","recipients":[{"addr":"b@example.com","state":"pending"}],"arrived":"` + time.Now().UTC().Format(time.RFC3339) + `","attempts":0,"size":3}`
	if env, err := unmarshalEnvelope("X", []byte(old)); err != nil || env.BodyType != "" {
		t.Fatalf("envelope without body: %+v, %v; want BodyType \"\"", env, err)
	}
}
