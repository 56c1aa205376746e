package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Conn is one authenticated connection to the upstream. It carries one
// message after another; it is not safe for concurrent use.
type Conn struct {
	sender *Sender
	wire   *wire
	ext    extensions // what the server offered in its last EHLO
	raw    net.Conn
	secure bool // TLS, implicit or STARTTLS

	broken bool // a network failure or a cut-off transaction: do not reuse
	dirty  bool // a transaction was started and not completed: RSET first
	utf8   bool // the last MAIL carried SMTPUTF8 (RFC 6531 §3.4)
}

// Usable reports whether the connection may carry another message.
func (c *Conn) Usable() bool { return !c.broken }

// Close ends the session with QUIT and closes the connection.
func (c *Conn) Close() error {
	if c.broken {
		return c.close()
	}
	rep, err := c.wire.cmd("QUIT")
	c.close()
	if err != nil {
		return err
	}
	if rep.code != 221 {
		return rep.err()
	}
	return nil
}

func (c *Conn) close() error {
	c.broken = true
	return c.raw.Close()
}

// guard closes the connection when ctx ends, so that a blocked read or
// write returns; the returned function stops that.
func (c *Conn) guard(ctx context.Context) func() {
	stop := context.AfterFunc(ctx, func() { c.raw.Close() })
	return func() { stop() }
}

// fail records what err means for the connection and classifies it: a
// failure that is not a reply (network, malformed reply) or a 421 (RFC
// 5321 §3.8: the server is closing the channel) ends the connection.
func (c *Conn) fail(ctx context.Context, step string, err error) *Error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		c.broken = true
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	} else if se.Code == 421 {
		c.broken = true
	}
	return classify(c.sender.addr, step, err)
}

// mailCommand is the MAIL FROM command for msg with the parameters the
// server offers (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8), or a
// permanent error when the message cannot go to this server at all.
func (c *Conn) mailCommand(msg *Message) (string, error) {
	if msg.UTF8 && !c.ext.has("SMTPUTF8") {
		// RFC 6531 §3.4: without SMTPUTF8 the message cannot be sent as
		// it is, and it will not change.
		return "", &Error{Addr: c.sender.addr, Step: StepMail, Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
			Message: "the message needs SMTPUTF8 (a non-ASCII address), which the upstream does not offer"}
	}
	if msg.BodyType == string(smtp.Body8BitMIME) && !c.ext.has("8BITMIME") {
		// RFC 6152 §3: a message declared 8BITMIME must not go as it is
		// to a server without 8BITMIME; relay does not convert it to 7 bits
		// (as Postfix would), so it is refused for good: RFC 3463 X.6.3,
		// conversion required but not supported. A message without BODY=
		// is sent as it is (see below).
		return "", &Error{Addr: c.sender.addr, Step: StepMail, Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 3},
			Message: "the message is declared 8-bit (BODY=8BITMIME) and the upstream does not offer 8BITMIME; relay does not convert it to 7 bits"}
	}
	if limit := c.ext.sizeLimit(); limit > 0 && msg.Size > limit {
		// RFC 1870 §6.1: a message the server declared too big is not sent.
		return "", &Error{Addr: c.sender.addr, Step: StepMail, Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
			Message: fmt.Sprintf("message of %d bytes exceeds the upstream's size limit of %d bytes", msg.Size, limit)}
	}
	line := "MAIL FROM:<" + msg.From + ">"
	if msg.Size > 0 && c.ext.has("SIZE") {
		line += " SIZE=" + strconv.FormatInt(msg.Size, 10)
	}
	if msg.BodyType != "" && c.ext.has("8BITMIME") {
		line += " BODY=" + msg.BodyType
	}
	// Without 8BITMIME, a message declared 7BIT, or not declared at all
	// (legacy clients send 8-bit text without BODY=), goes as it is, as
	// most MTAs do: relay does not downgrade content.
	if msg.UTF8 || msg.UTF8Declared && c.ext.has("SMTPUTF8") {
		line += " SMTPUTF8"
	}
	return line, nil
}

// Mail starts a transaction (MAIL FROM) with msg's From, Size, UTF8 and
// BodyType, after an RSET if an earlier one was left open. A message that
// needs SMTPUTF8 cannot go to an upstream that does not offer it, now or
// later: a permanent 553 5.6.7; nor can a message declared BODY=8BITMIME
// go to one without 8BITMIME: a permanent 554 5.6.3. Then nothing is sent
// (see mailCommand).
func (c *Conn) Mail(ctx context.Context, msg *Message) error {
	if c.broken {
		return c.unusable(StepMail)
	}
	line, err := c.mailCommand(msg)
	if err != nil {
		return err
	}
	defer c.guard(ctx)()
	if c.dirty {
		if err := c.reset(ctx); err != nil {
			return err
		}
	}
	c.dirty = true
	c.utf8 = strings.HasSuffix(line, " SMTPUTF8")
	return c.step(ctx, StepMail, line, 250)
}

// Rcpt adds a recipient (RCPT TO). A non-ASCII recipient in a transaction
// whose MAIL went without SMTPUTF8 (an upstream that does not offer it,
// with a client's declaration dropped: Message.UTF8Declared) is refused
// here, 553 5.6.7, without a word to the upstream (RFC 6531 §3.4: it
// cannot go as it is); the other recipients of the transaction go on.
func (c *Conn) Rcpt(ctx context.Context, to string) error {
	if !c.utf8 && NeedsSMTPUTF8(to) {
		why := "which the upstream does not offer"
		if c.ext.has("SMTPUTF8") {
			why = "which the transaction's MAIL did not declare"
		}
		return &Error{Addr: c.sender.addr, Step: StepRcpt, Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
			Message: "the recipient address needs SMTPUTF8 (it is not ASCII), " + why}
	}
	defer c.guard(ctx)()
	return c.step(ctx, StepRcpt, "RCPT TO:<"+to+">", 250)
}

// step sends one command and expects one reply code.
func (c *Conn) step(ctx context.Context, step, line string, code int) error {
	rep, err := c.wire.cmd(line)
	if err == nil {
		err = rep.expect(code)
	}
	if err != nil {
		return c.fail(ctx, step, err)
	}
	return nil
}

// Data sends the message (CRLF line endings) with BDAT when the server
// offers CHUNKING, else with DATA, and returns the upstream's final reply
// text. A failure while the message is on its way leaves the connection
// broken: the upstream may or may not have the message.
func (c *Conn) Data(ctx context.Context, body io.Reader) (string, error) {
	defer c.guard(ctx)()
	if c.ext.has("CHUNKING") {
		return c.sendBDAT(ctx, body)
	}
	if err := c.step(ctx, StepData, "DATA", 354); err != nil {
		return "", err
	}
	return c.sendDATA(ctx, body)
}

// Reset abandons the current transaction, if any (RSET). On a connection
// that sat idle it also checks that the server is still there.
func (c *Conn) Reset(ctx context.Context) error {
	if c.broken {
		return nil
	}
	defer c.guard(ctx)()
	return c.reset(ctx)
}

func (c *Conn) reset(ctx context.Context) error {
	if err := c.step(ctx, StepReset, "RSET", 250); err != nil {
		return err
	}
	c.dirty = false
	return nil
}

func (c *Conn) unusable(step string) *Error {
	return &Error{Addr: c.sender.addr, Step: step, Temporary: true, Message: "connection is no longer usable"}
}

// Send delivers msg on this connection. A returned error is about the
// whole message (MAIL, DATA, the connection); refusals of single
// recipients are in Result.Rcpts. When every recipient is refused the
// transaction is reset and no message is sent.
//
// With PIPELINING (RFC 2920 §3.1) the RSET of an earlier transaction,
// MAIL FROM, every RCPT TO and, without CHUNKING, DATA go out in one write
// and their replies are read in order: one round trip before the message.
func (c *Conn) Send(ctx context.Context, msg *Message) (*Result, error) {
	if len(msg.To) == 0 {
		return nil, errors.New("upstream: a message needs at least one recipient")
	}
	if c.broken {
		return nil, c.unusable(StepMail)
	}
	if !c.ext.has("PIPELINING") {
		return c.sendStepByStep(ctx, msg)
	}
	mail, err := c.mailCommand(msg)
	if err != nil {
		return nil, err
	}
	defer c.guard(ctx)()
	w := c.wire
	reset := c.dirty
	if reset {
		w.send("RSET")
	}
	w.send(mail)
	for _, to := range msg.To {
		w.send("RCPT TO:<" + to + ">")
	}
	data := !c.ext.has("CHUNKING")
	if data {
		w.send("DATA")
	}
	if err := w.flush(); err != nil {
		return nil, c.fail(ctx, StepMail, err)
	}
	c.dirty = true
	if reset {
		if err := c.expect(ctx, StepReset, 250); err != nil {
			return nil, err
		}
	}
	mailErr := c.expect(ctx, StepMail, 250)
	if c.broken {
		return nil, mailErr
	}
	res := &Result{Rcpts: make([]error, len(msg.To))}
	for i := range msg.To {
		if err := c.expect(ctx, StepRcpt, 250); err != nil {
			if c.broken {
				return nil, err
			}
			res.Rcpts[i] = err
		}
	}
	var dataErr error
	if data {
		if dataErr = c.expect(ctx, StepData, 354); c.broken {
			return nil, dataErr
		}
	}
	if mailErr != nil || res.Accepted() == 0 {
		if data && dataErr == nil {
			// A server that took DATA with no recipient gets an empty
			// message, which goes nowhere.
			if _, err := c.sendDATA(ctx, eofReader{}); err != nil {
				return nil, err
			}
		}
		if mailErr != nil {
			return nil, mailErr
		}
		c.reset(ctx)
		return res, nil
	}
	if dataErr != nil {
		return nil, dataErr
	}
	var reply string
	if data {
		reply, err = c.sendDATA(ctx, msg.Body)
	} else {
		reply, err = c.sendBDAT(ctx, msg.Body)
	}
	if err != nil {
		return nil, err
	}
	res.Reply = reply
	return res, nil
}

// expect reads one reply of a pipelined group.
func (c *Conn) expect(ctx context.Context, step string, code int) error {
	rep, err := c.wire.read()
	if err == nil {
		err = rep.expect(code)
	}
	if err != nil {
		return c.fail(ctx, step, err)
	}
	return nil
}

// sendStepByStep is Send for a server without PIPELINING.
func (c *Conn) sendStepByStep(ctx context.Context, msg *Message) (*Result, error) {
	mail, err := c.mailCommand(msg)
	if err != nil {
		return nil, err
	}
	defer c.guard(ctx)()
	if c.dirty {
		if err := c.reset(ctx); err != nil {
			return nil, err
		}
	}
	c.dirty = true
	if err := c.step(ctx, StepMail, mail, 250); err != nil {
		return nil, err
	}
	res := &Result{Rcpts: make([]error, len(msg.To))}
	for i, to := range msg.To {
		if err := c.step(ctx, StepRcpt, "RCPT TO:<"+to+">", 250); err != nil {
			if c.broken {
				return nil, err
			}
			res.Rcpts[i] = err
		}
	}
	if res.Accepted() == 0 {
		c.reset(ctx)
		return res, nil
	}
	reply, err := c.Data(ctx, msg.Body)
	if err != nil {
		return nil, err
	}
	res.Reply = reply
	return res, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
