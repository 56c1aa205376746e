package sasllogin

import (
	"errors"
	"testing"

	"github.com/emersion/go-sasl"
)

func TestExchange(t *testing.T) {
	errBad := errors.New("bad")
	check := func(u, p string) error {
		if u == "scada" && p == "s3cret" {
			return nil
		}
		return errBad
	}
	tests := []struct {
		name      string
		ir        []byte
		responses []string
		wantErr   error
	}{
		{"challenged", nil, []string{"scada", "s3cret"}, nil},
		{"initial response", []byte("scada"), []string{"s3cret"}, nil},
		{"wrong password", nil, []string{"scada", "nope"}, errBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(check)
			challenge, done, err := s.Next(tt.ir)
			for _, r := range tt.responses {
				if done || err != nil {
					t.Fatalf("Next finished early: done=%v err=%v", done, err)
				}
				if string(challenge) != "Username:" && string(challenge) != "Password:" {
					t.Fatalf("challenge = %q; want Username: or Password:", challenge)
				}
				challenge, done, err = s.Next([]byte(r))
			}
			if !done || !errors.Is(err, tt.wantErr) {
				t.Fatalf("end: done=%v err=%v; want done, %v", done, err, tt.wantErr)
			}
		})
	}
}

// TestAgainstGoSASLClient runs go-sasl's own LOGIN client against the server.
func TestAgainstGoSASLClient(t *testing.T) {
	var gotUser, gotPass string
	s := NewServer(func(u, p string) error { gotUser, gotPass = u, p; return nil })
	c := sasl.NewLoginClient("alarms@example.com", "pa ss")
	mech, ir, err := c.Start()
	if err != nil || mech != Mechanism {
		t.Fatalf("Start() = %q, %v", mech, err)
	}
	challenge, done, err := s.Next(ir)
	for !done && err == nil {
		var resp []byte
		if resp, err = c.Next(challenge); err != nil {
			t.Fatal(err)
		}
		challenge, done, err = s.Next(resp)
	}
	if err != nil || gotUser != "alarms@example.com" || gotPass != "pa ss" {
		t.Fatalf("got user %q pass %q err %v", gotUser, gotPass, err)
	}
}
