package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/oauth"
)

// Conn is one authenticated connection to the upstream. It carries one
// message after another; it is not safe for concurrent use.
type Conn struct {
	sender *Sender
	client *smtp.Client
	raw    net.Conn
	trace  *trace
	params *mailParamConn // sets BODY= of MAIL FROM (mailparam.go)

	broken bool // a network failure or a cut-off transaction: do not reuse
	dirty  bool // a transaction was started and not completed: RSET first
}

// Usable reports whether the connection may carry another message.
func (c *Conn) Usable() bool { return !c.broken }

// Close ends the session with QUIT and closes the connection.
func (c *Conn) Close() error {
	if c.broken {
		return c.close()
	}
	err := c.client.Quit()
	c.close()
	return err
}

func (c *Conn) close() error {
	c.broken = true
	return c.client.Close()
}

// guard closes the connection when ctx ends, so that a blocked read or
// write returns; the returned function stops that.
func (c *Conn) guard(ctx context.Context) func() {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	return func() { stop() }
}

// fail records what err means for the connection and classifies it.
func (c *Conn) fail(ctx context.Context, step string, err error) *Error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		c.broken = true
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	} else if se.Code == 421 {
		// RFC 5321 §3.8: the server is closing the channel.
		c.broken = true
	}
	return classify(c.sender.addr, step, err)
}

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
	ok, offered := c.client.Extension("AUTH")
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
		var client sasl.Client
		if m == sasl.Plain {
			client = sasl.NewPlainClient("", p.Username, p.Password)
		} else {
			client = sasl.NewLoginClient(p.Username, p.Password)
		}
		c.trace.setMode(traceAuth)
		err = c.client.Auth(client)
		c.trace.setMode(traceCommands)
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
	c.trace.setMode(traceAuth)
	err = c.client.Auth(client)
	c.trace.setMode(traceCommands)
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

func (c *Conn) notSecureHint() string {
	if _, ok := c.client.TLSConnectionState(); ok {
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

// Mail starts a transaction (MAIL FROM) with msg's From, Size, UTF8 and
// BodyType, after an RSET if an earlier one was left open. A message that
// needs SMTPUTF8 cannot go to an upstream that does not offer it, now or
// later: a permanent 553 5.6.7 (RFC 6531 §3.7.5), and nothing is sent.
func (c *Conn) Mail(ctx context.Context, msg *Message) error {
	if c.broken {
		return &Error{Addr: c.sender.addr, Step: StepMail, Temporary: true, Message: "connection is no longer usable"}
	}
	if ok, _ := c.client.Extension("SMTPUTF8"); msg.UTF8 && !ok {
		return &Error{Addr: c.sender.addr, Step: StepMail, Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
			Message: "the upstream does not offer SMTPUTF8, which this message needs for its non-ASCII addresses"}
	}
	defer c.guard(ctx)()
	if c.dirty {
		if err := c.client.Reset(); err != nil {
			return c.fail(ctx, StepReset, err)
		}
		c.dirty = false
	}
	c.dirty = true
	c.params.body = msg.BodyType
	err := c.client.Mail(msg.From, &smtp.MailOptions{Size: msg.Size, UTF8: msg.UTF8})
	c.params.body = ""
	if err != nil {
		return c.fail(ctx, StepMail, err)
	}
	return nil
}

// Rcpt adds a recipient (RCPT TO).
func (c *Conn) Rcpt(ctx context.Context, to string) error {
	defer c.guard(ctx)()
	if err := c.client.Rcpt(to, nil); err != nil {
		return c.fail(ctx, StepRcpt, err)
	}
	return nil
}

// Data streams the body (CRLF line endings) and returns the upstream's
// final reply text. An error at any point leaves the connection broken:
// the upstream may or may not have the message.
func (c *Conn) Data(ctx context.Context, body io.Reader) (string, error) {
	defer c.guard(ctx)()
	w, err := c.client.Data()
	if err != nil {
		return "", c.fail(ctx, StepData, err)
	}
	c.trace.setMode(traceBody)
	defer c.trace.setMode(traceCommands)
	_, err = io.Copy(w, body)
	if err != nil {
		c.broken = true
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", classify(c.sender.addr, StepData, fmt.Errorf("sending the message: %w", err))
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", c.fail(ctx, StepData, err)
	}
	c.dirty = false
	return resp.StatusText, nil
}

// Reset abandons the current transaction, if any (RSET). On a connection
// that sat idle it also checks that the server is still there.
func (c *Conn) Reset(ctx context.Context) error {
	if c.broken {
		return nil
	}
	defer c.guard(ctx)()
	if err := c.client.Reset(); err != nil {
		return c.fail(ctx, StepReset, err)
	}
	c.dirty = false
	return nil
}

// Send delivers msg on this connection. A returned error is about the
// whole message (MAIL, DATA, the connection); refusals of single
// recipients are in Result.Rcpts. When every recipient is refused the
// transaction is reset and no DATA is sent.
func (c *Conn) Send(ctx context.Context, msg *Message) (*Result, error) {
	if len(msg.To) == 0 {
		return nil, errors.New("upstream: a message needs at least one recipient")
	}
	if err := c.Mail(ctx, msg); err != nil {
		return nil, err
	}
	res := &Result{Rcpts: make([]error, len(msg.To))}
	for i, to := range msg.To {
		if err := c.Rcpt(ctx, to); err != nil {
			if c.broken {
				return nil, err
			}
			res.Rcpts[i] = err
		}
	}
	if res.Accepted() == 0 {
		c.Reset(ctx)
		return res, nil
	}
	reply, err := c.Data(ctx, msg.Body)
	if err != nil {
		return nil, err
	}
	res.Reply = reply
	return res, nil
}
