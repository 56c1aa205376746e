package upstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/sasllogin"
	"github.com/relaymail/relay/oauth"
)

// maxChallenges bounds one AUTH exchange: PLAIN takes none, LOGIN two,
// XOAUTH2 two.
const maxChallenges = 8

// authenticate logs in as the profile says: nothing without a username,
// XOAUTH2 for OAuth2 profiles, else PLAIN or LOGIN.
func (c *Conn) authenticate(ctx context.Context) error {
	p := c.sender.profile
	if p.Username == "" {
		return nil
	}
	defer c.guard(ctx)()
	if p.IsOAuth2() {
		return c.authXOAUTH2(ctx)
	}
	return c.authPassword(ctx)
}

// authPassword tries PLAIN, then LOGIN, among what the server offers.
// Office 365 answers PLAIN with 504 5.7.4 and wants LOGIN: a 504 moves on
// to the next mechanism.
func (c *Conn) authPassword(ctx context.Context) error {
	p := c.sender.profile
	offered, ok := c.ext["AUTH"]
	if !ok {
		return &Error{Addr: c.sender.addr, Step: StepAuth, Temporary: true,
			Message: "the server offers no AUTH, but the profile has a username" + c.notSecureHint()}
	}
	var mechs []string
	for _, m := range []string{sasl.Plain, sasl.Login} {
		if hasWord(offered, m) {
			mechs = append(mechs, m)
		}
	}
	if len(mechs) == 0 {
		return &Error{Addr: c.sender.addr, Step: StepAuth, Temporary: true,
			Message: fmt.Sprintf("the server offers AUTH %s; relay can log in with PLAIN or LOGIN", offered)}
	}
	var err error
	for _, m := range mechs {
		client := sasllogin.NewClient(p.Username, p.Password)
		if m == sasl.Plain {
			client = sasl.NewPlainClient("", p.Username, p.Password)
		}
		err = c.auth(client)
		var se *smtp.SMTPError
		if err == nil || !errors.As(err, &se) || se.Code != 504 {
			break
		}
	}
	if err != nil {
		return c.fail(ctx, StepAuth, err)
	}
	return nil
}

// authXOAUTH2 logs in with an access token. A refused token is reported
// to the token source, which drops it.
func (c *Conn) authXOAUTH2(ctx context.Context) error {
	s := c.sender
	token, err := s.opts.Tokens.Token(ctx)
	if err != nil {
		return &Error{Addr: s.addr, Step: StepToken, Temporary: true, Message: err.Error(), Err: err}
	}
	client := oauth.NewXOAUTH2Client(s.profile.Username, token)
	err = c.auth(client)
	if err == nil {
		return nil
	}
	e := c.fail(ctx, StepAuth, err)
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		// The token was refused (Office 365: 535 5.7.3; Gmail: a 334 with
		// a JSON error, then 535): drop it, never the refresh token.
		s.opts.Tokens.Invalidate(token)
		if detail := client.ServerError(); detail != nil {
			e.Message += " (" + detail.Error() + ")"
		}
	}
	return e
}

// auth runs one SASL exchange (RFC 4954 §4). A final reply ends it at
// once: "*" (cancel) answers only a 334 challenge, when the client cannot
// go on; after a 5xx there is nothing to cancel.
func (c *Conn) auth(client sasl.Client) error {
	mech, ir, err := client.Start()
	if err != nil {
		return err
	}
	w := c.wire
	w.trace.setAuth(true)
	defer w.trace.setAuth(false)
	line := "AUTH " + mech
	if ir != nil {
		line += " " + encodeSASL(ir)
	}
	w.send(line)
	for range maxChallenges {
		if err := w.flush(); err != nil {
			return err
		}
		rep, err := w.read()
		if err != nil {
			return err
		}
		switch {
		case rep.code == 235:
			return nil
		case rep.code != 334:
			return rep.err()
		}
		challenge, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rep.lines[0]))
		var resp []byte
		if err == nil {
			resp, err = client.Next(challenge)
		}
		if err != nil {
			return c.cancelAuth(fmt.Errorf("AUTH %s: %w", mech, err))
		}
		w.send(base64.StdEncoding.EncodeToString(resp)) // empty: an empty line
	}
	return c.cancelAuth(fmt.Errorf("AUTH %s: more than %d challenges", mech, maxChallenges))
}

// cancelAuth answers a challenge with "*" and reads the server's final
// reply (501, RFC 4954 §4), then reports cause.
func (c *Conn) cancelAuth(cause error) error {
	rep, err := c.wire.cmd("*")
	if err != nil {
		return err
	}
	if rep.code == 334 {
		// A server that goes on after "*" cannot be trusted with the
		// session.
		c.broken = true
	}
	return cause
}

// encodeSASL is a SASL response on the wire: base64, "=" for an empty
// initial response (RFC 4954 §4).
func encodeSASL(p []byte) string {
	if len(p) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(p)
}

func (c *Conn) notSecureHint() string {
	if c.secure {
		return ""
	}
	return "; many servers offer AUTH only after STARTTLS: set use_starttls or use_ssl"
}

func hasWord(list, word string) bool {
	for _, f := range strings.Fields(list) {
		if strings.EqualFold(f, word) {
			return true
		}
	}
	return false
}
