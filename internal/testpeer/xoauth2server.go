package testpeer

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// AuthXOAUTH2Style selects how a test upstream refuses a bad token.
type AuthXOAUTH2Style int

const (
	// AuthGmailStyle answers the credentials with a 334 carrying a base64
	// JSON error, then fails the client's empty response with 535 5.7.8.
	AuthGmailStyle AuthXOAUTH2Style = iota
	// AuthOffice365Style fails the credentials at once with 535 5.7.3.
	AuthOffice365Style
)

// AuthXOAUTH2Server is the server side of XOAUTH2 for go-smtp test
// upstreams; return it from an AuthSession's Auth("XOAUTH2"). It accepts
// the credentials inline or after an empty 334, as real servers do.
type AuthXOAUTH2Server struct {
	// Validate checks user's token; an error refuses it. (With
	// AuthServer: call its Validate and compare the subject if wanted.)
	Validate func(user, token string) error
	Style    AuthXOAUTH2Style
	// Scope is reported in Gmail-style errors; default
	// "https://mail.google.com/".
	Scope string

	step    int
	refused bool
}

// NewAuthXOAUTH2Server returns a fresh server for one AUTH exchange.
func NewAuthXOAUTH2Server(style AuthXOAUTH2Style, validate func(user, token string) error) *AuthXOAUTH2Server {
	return &AuthXOAUTH2Server{Validate: validate, Style: style}
}

var _ sasl.Server = (*AuthXOAUTH2Server)(nil)

// Replies the way Gmail and Office 365 send them.
var (
	errGmailBadCredentials = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials"}
	errOffice365Unsuccessful = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3},
		Message: "Authentication unsuccessful"}
	errSyntax = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Cannot decode the XOAUTH2 response"}
)

// Next implements sasl.Server.
func (s *AuthXOAUTH2Server) Next(response []byte) (challenge []byte, done bool, err error) {
	s.step++
	if s.refused {
		// The client's (empty) answer to the error challenge.
		return nil, false, errGmailBadCredentials
	}
	if s.step == 1 && response == nil {
		return nil, false, nil // "334 " and wait for the credentials
	}
	if s.step > 2 {
		return nil, false, errors.New("unexpected XOAUTH2 response")
	}
	user, token, ok := parseXOAUTH2(response)
	if !ok {
		return nil, false, errSyntax
	}
	if s.Validate != nil {
		err = s.Validate(user, token)
	}
	if err == nil {
		return nil, true, nil
	}
	if s.Style == AuthOffice365Style {
		return nil, false, errOffice365Unsuccessful
	}
	s.refused = true
	scope := s.Scope
	if scope == "" {
		scope = "https://mail.google.com/"
	}
	ch, _ := json.Marshal(map[string]string{"status": "401", "schemes": "Bearer", "scope": scope})
	return ch, false, nil
}

// parseXOAUTH2 splits "user=U\x01auth=Bearer T\x01\x01".
func parseXOAUTH2(b []byte) (user, token string, ok bool) {
	rest, found := bytes.CutSuffix(b, []byte("\x01\x01"))
	if !found {
		return "", "", false
	}
	for part := range bytes.SplitSeq(rest, []byte("\x01")) {
		switch {
		case bytes.HasPrefix(part, []byte("user=")):
			user = string(part[len("user="):])
		case bytes.HasPrefix(part, []byte("auth=")):
			scheme, tok, found := bytes.Cut(part[len("auth="):], []byte(" "))
			if !found || !bytes.EqualFold(scheme, []byte("Bearer")) {
				return "", "", false
			}
			token = string(tok)
		}
	}
	return user, token, user != "" && token != ""
}
