package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-smtp"
)

// Steps of an upstream session, named in errors as Error.Step.
const (
	StepConnect  = "connect"
	StepGreeting = "greeting"
	StepEHLO     = "EHLO"
	StepSTARTTLS = "STARTTLS"
	StepTLS      = "TLS handshake"
	StepToken    = "access token"
	StepAuth     = "AUTH"
	StepMail     = "MAIL FROM"
	StepRcpt     = "RCPT TO"
	StepData     = "DATA"
	StepReset    = "RSET"
)

// Error is a failed upstream step. Callers decide what to do with
// errors.As and Temporary: retry later, or bounce.
type Error struct {
	// Addr is the upstream's host:port.
	Addr string
	// Step is what failed: one of the Step constants.
	Step string
	// Temporary is true when the same message may succeed later. For a
	// fixed upstream, network, TLS, authentication and token failures are
	// temporary: bouncing mail because a token endpoint blinked is the
	// classic bug of this field. Only the upstream's own 5xx answers to
	// MAIL, RCPT and DATA are permanent.
	Temporary bool
	// Code and EnhancedCode are the upstream's reply, if it gave one.
	Code         int
	EnhancedCode smtp.EnhancedCode
	// Message is the upstream's reply text, or a description of a local
	// failure.
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s: %s: ", e.Addr, e.Step)
	if e.Code != 0 {
		fmt.Fprintf(&b, "%d ", e.Code)
		if e.EnhancedCode != smtp.EnhancedCodeNotSet && e.EnhancedCode != smtp.NoEnhancedCode {
			fmt.Fprintf(&b, "%d.%d.%d ", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
		}
	}
	b.WriteString(e.Message)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Reply is what an SMTP client of relay should be told about this failure
// when it waits for the upstream (delivery = "direct"). An upstream's own
// answer to MAIL, RCPT or DATA is passed on with its code and enhanced
// code; anything else becomes a temporary local code, so a legacy
// application never mistakes an upstream login problem for its own.
func (e *Error) Reply() *smtp.SMTPError {
	switch e.Step {
	case StepMail, StepRcpt, StepData:
		if e.Code >= 400 && e.Code < 600 {
			ec := e.EnhancedCode
			if ec == smtp.EnhancedCodeNotSet || ec == smtp.NoEnhancedCode {
				ec = smtp.EnhancedCode{e.Code / 100, 0, 0}
			}
			return &smtp.SMTPError{Code: e.Code, EnhancedCode: ec, Message: oneLine(e.Message)}
		}
	case StepToken, StepAuth:
		// RFC 4954 §6: 454 4.7.0 temporary authentication failure.
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "upstream authentication failed, try again later: " + oneLine(e.shortCause())}
	case StepTLS, StepSTARTTLS:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5}, Message: "upstream TLS failed, try again later: " + oneLine(e.shortCause())}
	}
	if errors.Is(e.Err, context.DeadlineExceeded) || isTimeout(e.Err) {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "upstream timed out, try again later"}
	}
	if e.Step == StepConnect {
		// RFC 3463: X.4.1 no answer from host.
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "upstream not reachable, try again later: " + oneLine(e.shortCause())}
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "upstream failed, try again later: " + oneLine(e.shortCause())}
}

func (e *Error) shortCause() string {
	if e.Code != 0 {
		return fmt.Sprintf("%d %s", e.Code, e.Message)
	}
	return e.Message
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", " ")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// classify turns an error from a step into an *Error. A reply from the
// server keeps its code; everything else is a local or network failure,
// which is temporary.
func classify(addr, step string, err error) *Error {
	var ue *Error
	if errors.As(err, &ue) {
		return ue
	}
	e := &Error{Addr: addr, Step: step, Err: err, Temporary: true}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e.Code, e.EnhancedCode, e.Message = se.Code, se.EnhancedCode, se.Message
		switch step {
		case StepMail, StepRcpt, StepData:
			e.Temporary = se.Code/100 != 5
		}
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		e.Message = "canceled"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		e.Message = "timed out: " + err.Error()
	default:
		e.Message = err.Error()
	}
	return e
}
