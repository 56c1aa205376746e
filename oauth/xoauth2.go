package oauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
)

// XOAUTH2 is the SASL mechanism name of Google's and Microsoft's bearer
// token authentication for SMTP, IMAP and POP.
const XOAUTH2 = "XOAUTH2"

// XOAUTH2Client is a go-sasl Client for XOAUTH2 (go-sasl dropped its own).
//
// It sends no initial response, so go-smtp sends "AUTH XOAUTH2" alone and
// the credentials after the server's 334: RFC 4954 §4 limits the AUTH
// command line to 12288 octets, and Google's delegated (domain-wide)
// tokens make an inline response longer than some servers accept.
//
// When the server refuses the token it answers the credentials with a 334
// whose payload is a JSON error (Gmail: {"status":"401","schemes":"Bearer",
// "scope":"https://mail.google.com/"}); the protocol wants an empty
// response to it, after which the server fails the command (535 5.7.8).
// The client sends that empty response and keeps the decoded error for
// ServerError. Office 365 skips the challenge and answers 535 5.7.3.
//
// A client serves one AUTH exchange.
type XOAUTH2Client struct {
	username, token string
	step            int
	serverErr       *XOAUTH2Error
}

// NewXOAUTH2Client returns a client authenticating username with an OAuth
// 2.0 access token.
func NewXOAUTH2Client(username, token string) *XOAUTH2Client {
	return &XOAUTH2Client{username: username, token: token}
}

var _ sasl.Client = (*XOAUTH2Client)(nil)

// Start begins the exchange without an initial response.
func (c *XOAUTH2Client) Start() (mech string, ir []byte, err error) {
	if c.username == "" || strings.ContainsAny(c.username, "\x01\r\n") {
		return "", nil, errors.New("xoauth2: the user name is empty or holds control characters")
	}
	if c.token == "" || strings.ContainsFunc(c.token, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		// RFC 6750 §2.1: b64token characters only. Say nothing of the
		// token itself.
		return "", nil, errors.New("xoauth2: the access token is empty or not a bearer token")
	}
	c.step = 0
	c.serverErr = nil
	return XOAUTH2, nil, nil
}

// Next answers the server's challenges: the first (empty) one with the
// credentials, a second one, the error report, with an empty response.
func (c *XOAUTH2Client) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		// https://developers.google.com/gmail/imap/xoauth2-protocol
		return []byte("user=" + c.username + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
	case 2:
		e, err := ParseXOAUTH2Error(challenge)
		if err != nil {
			// Not JSON; still a refusal. Keep that, not the bytes.
			e = &XOAUTH2Error{}
		}
		c.serverErr = e
		// A non-nil empty slice: go-smtp sends an empty line for it,
		// while nil would end its loop without answering the server.
		return []byte{}, nil
	}
	return nil, sasl.ErrUnexpectedServerChallenge
}

// ServerError returns the error the server reported in a challenge after
// the credentials, or nil if it sent none.
func (c *XOAUTH2Client) ServerError() *XOAUTH2Error { return c.serverErr }

// XOAUTH2Error is the JSON error a server sends in an XOAUTH2 challenge.
// Status is an HTTP-like status ("401": the token is invalid or expired,
// "400": a malformed request) or, with some servers, an error word.
type XOAUTH2Error struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

func (e *XOAUTH2Error) Error() string {
	if e.Status == "" {
		return "xoauth2: the server refused the token"
	}
	s := "xoauth2: the server refused the token: status " + e.Status
	if e.Schemes != "" {
		s += ", schemes " + e.Schemes
	}
	if e.Scope != "" {
		s += ", scope " + e.Scope
	}
	return s
}

// TokenRefused reports whether the error says the token itself was not
// accepted (status 401, or a challenge without a readable status), so
// that a new token may succeed; 400 means a malformed request instead.
func (e *XOAUTH2Error) TokenRefused() bool { return e.Status == "401" || e.Status == "" }

// maxChallenge bounds what ParseXOAUTH2Error reads; real ones are under
// 200 bytes.
const maxChallenge = 4096

// ParseXOAUTH2Error decodes the JSON of an XOAUTH2 error challenge (the
// payload after base64 decoding). Fields may be strings or numbers; each
// is made printable and bounded, because it ends up in logs.
func ParseXOAUTH2Error(challenge []byte) (*XOAUTH2Error, error) {
	if len(challenge) > maxChallenge {
		return nil, fmt.Errorf("xoauth2: challenge of %d bytes is too long", len(challenge))
	}
	dec := json.NewDecoder(bytes.NewReader(challenge))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("xoauth2: challenge is not a JSON object: %w", err)
	}
	if m == nil {
		return nil, errors.New("xoauth2: challenge is not a JSON object")
	}
	e := &XOAUTH2Error{
		Status:  field(m, "status"),
		Schemes: field(m, "schemes"),
		Scope:   field(m, "scope"),
	}
	return e, nil
}

func field(m map[string]any, key string) string {
	switch v := m[key].(type) {
	case string:
		return clean(v, 200)
	case json.Number:
		return clean(v.String(), 200)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}
