package sasllogin

import (
	"bytes"

	"github.com/emersion/go-sasl"
)

type client struct {
	username, password string
}

// NewClient returns a LOGIN client. It sends the username as its initial
// response ("AUTH LOGIN dXNlcg==", which Office 365 and Postfix take) and
// answers each later challenge: "Username:" (from a server that wants the
// name asked for) with the username, anything else with the password.
// go-sasl's own LOGIN client fails on any challenge but exactly
// "Password:".
func NewClient(username, password string) sasl.Client {
	return &client{username: username, password: password}
}

// Start implements sasl.Client.
func (c *client) Start() (string, []byte, error) {
	return Mechanism, []byte(c.username), nil
}

// Next implements sasl.Client.
func (c *client) Next(challenge []byte) ([]byte, error) {
	if bytes.HasPrefix(bytes.ToLower(challenge), []byte("username")) {
		return []byte(c.username), nil
	}
	return []byte(c.password), nil
}
