// Package sasllogin is the SASL LOGIN mechanism, server and client. go-sasl
// no longer has the server, and its client takes no challenge but exactly
// "Password:". LOGIN is obsolete (draft-murchison-sasl-login) but it is what
// many legacy applications and Office 365 speak.
package sasllogin

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// Authenticator checks a username and password.
type Authenticator func(username, password string) error

// Mechanism is the name of the mechanism in EHLO and AUTH.
const Mechanism = sasl.Login

type server struct {
	auth     Authenticator
	step     int
	username string
}

// NewServer returns a LOGIN server. The client may send the username as
// its initial response ("AUTH LOGIN dXNlcg=="); otherwise the server asks
// for it with the "Username:" challenge, then for "Password:".
func NewServer(auth Authenticator) sasl.Server {
	return &server{auth: auth}
}

// Next implements sasl.Server.
func (s *server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return []byte("Username:"), false, nil
		}
		s.username = string(response)
		s.step = 2
		return []byte("Password:"), false, nil
	case 1:
		s.username = string(response)
		s.step = 2
		return []byte("Password:"), false, nil
	case 2:
		s.step = 3
		return nil, true, s.auth(s.username, string(response))
	}
	return nil, false, errors.New("sasl login: unexpected response after authentication")
}
