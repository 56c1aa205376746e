package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// refusal is a command's refusal together with what its log line needs:
// why, when the reply does not say it all, and how loud.
type refusal struct {
	reply *smtp.SMTPError
	cause error      // nil: the reply's text is the reason
	level slog.Level // Info: the client's doing; Warn or Error: trouble of relay or its upstream
	// logged marks a refusal already logged as a message event
	// ("delivery failed"), which answer does not log again.
	logged bool
	// abandoned marks a message the client gave up before its end
	// (clientDataRefusal): no reply is sent, so answer logs
	// "message abandoned" instead of a refusal.
	abandoned bool
	attrs     []any
}

func (r *refusal) Error() string { return replyString(r.reply) }

// Unwrap gives the reply, for errors.As(err, **smtp.SMTPError).
func (r *refusal) Unwrap() error { return r.reply }

// answer is the one place where the outcome of MAIL, RCPT, AUTH or DATA
// becomes go-smtp's reply. A refusal (4xx, 5xx) is logged exactly once,
// with the client's address (the session logger's "client"), the command,
// the reply with its enhanced code, and the reason. What go-smtp refuses
// itself (a command it cannot parse, one out of order) never reaches
// relay. go-smtp needs an *smtp.SMTPError from Data, never a wrapped error
// (it answers anything else with 554).
func (s *session) answer(cmd string, err error, attrs ...any) error {
	if err == nil {
		return nil
	}
	var r *refusal
	if !errors.As(err, &r) {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return s.answer(cmd, s.reply(err), attrs...)
		}
		r = &refusal{reply: se}
	}
	if r.reply.Code < 400 {
		return r.reply
	}
	if r.abandoned {
		s.logger.Info("message abandoned", append([]any{"command", "BDAT", "reason", "the message ended before its LAST chunk: RSET, EHLO, STARTTLS, a hang-up or a read timeout on the client's side, or a chunk past max_message_bytes (552)"}, r.attrs...)...)
		return r.reply
	}
	s.expectRefusal()
	if r.logged {
		return r.reply
	}
	reason := r.reply.Message
	if r.cause != nil {
		reason = r.cause.Error()
	}
	all := append([]any{"command", cmd, "reply", replyString(r.reply), "reason", reason}, attrs...)
	s.logger.Log(context.Background(), r.level, "command refused", append(all, r.attrs...)...)
	return r.reply
}

// reply is the one place where failures become what the client is told,
// with the cause for the log line (answer, refusal.go). An upstream's own
// answer is the client's business (Info); an upstream that cannot be
// reached, or refuses relay's login, is the operator's (Warn).
func (s *session) reply(err error) *refusal {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		level := slog.LevelInfo
		if ue.Code == 0 || ue.Step == upstream.StepAuth || ue.Step == upstream.StepToken {
			level = slog.LevelWarn
		}
		return &refusal{reply: ue.Reply(), cause: ue, level: level}
	}
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &refusal{reply: se}
	}
	if errors.Is(err, context.Canceled) {
		return &refusal{reply: errShuttingDown}
	}
	return localTrouble("deliver", err)
}

// clientDataRefusal is the refusal of a message whose reading failed on
// the client's side with err. A BDAT message ended before its LAST chunk
// (RSET, EHLO, STARTTLS, a hang-up, or a chunk past max_message_bytes that
// go-smtp refuses itself: go-smtp closes the pipe with smtp.ErrDataReset)
// is abandoned, not refused: go-smtp never sends its reply.
func clientDataRefusal(err error, attrs ...any) *refusal {
	return &refusal{reply: clientDataError(err), cause: err, attrs: attrs, abandoned: errors.Is(err, smtp.ErrDataReset)}
}

func clientDataError(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se // 552 5.3.4 for a message past max_message_bytes or max_header_bytes
	}
	if isTimeout(err) {
		return errDataTimeout
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message not received completely"}
}

func replyString(r *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
}

// localTrouble answers a failure of relay's own storage (the spool, a
// Maildir). A full disk or another file-system error, a spool closed by a
// shutdown, may clear up: 451 4.3.0, try again later (never a 250). Anything else will fail the same
// way for this message every time, so the client must not retry it for
// ever: 554 5.3.0 (RFC 3463 X.3.0, other mail system status).
func localTrouble(what string, err error) *refusal {
	cause := errors.New(what + ": " + err.Error())
	if isFileSystemError(err) || errors.Is(err, spool.ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &refusal{level: slog.LevelError, cause: cause,
			reply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error: cannot store the message, try again later"}}
	}
	return &refusal{level: slog.LevelError, cause: cause,
		reply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 3, 0}, Message: "Local error: this message cannot be stored"}}
}

// isFileSystemError reports whether err comes from the operating system's
// file calls: a full disk (ENOSPC, EDQUOT), an I/O error, a permission
// that an operator may fix.
func isFileSystemError(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se) || errors.As(err, &errno)
}

// Mail implements smtp.Session (session.go: mail).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	return s.answer("MAIL", s.mail(from, opts), "from", from)
}

// Rcpt implements smtp.Session (session.go: rcpt).
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	return s.answer("RCPT", s.rcpt(to, opts), "to", to)
}

// Data implements smtp.Session (session.go: data).
func (s *session) Data(r io.Reader) error {
	// Held through the answer, so that a Reset waits for its refusal to
	// be announced (replyWatch.forget).
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	return s.answer("DATA", s.data(r))
}

// Auth implements smtp.AuthSession (session.go: auth). Failed logins are
// logged by the throttle (throttle.go), malformed responses by saslError.
func (s *session) Auth(mech string) (sasl.Server, error) {
	srv, err := s.auth(mech)
	return srv, s.answer("AUTH", err, "mechanism", mech)
}

// replyWatch logs, once, the refusals go-smtp answers itself, before relay
// sees the command: a command it cannot parse (MAIL FROM:<root>, 501
// 5.5.2), one out of sequence, one recipient past max_recipients (452
// 4.5.3), a line past 2000 octets. It reads the replies written on a
// connection in the clear; relay's own refusals, already logged by answer
// or the AUTH throttle, are announced with expect and skipped. It sees
// the replies inside TLS too: relay's TLS lies beneath the connection it
// watches (starttls.go).
type replyWatch struct {
	mu       sync.Mutex
	expected int // refusals relay logged whose reply has yet to go out
	log      func(reply string)
}

func (w *replyWatch) wrote(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log == nil {
		return
	}
	// go-smtp writes a one-line reply in one write: "550 5.5.2 text\r\n".
	if len(p) < 5 || (p[0] != '4' && p[0] != '5') || p[3] != ' ' {
		return
	}
	if w.expected > 0 {
		w.expected--
		return
	}
	if bytes.HasPrefix(p, []byte("421 ")) {
		return // the connection ends (timeout, shutdown): no command was refused
	}
	w.log(string(bytes.TrimRight(p, "\r\n")))
}

// expect announces a refusal relay logs itself.
func (w *replyWatch) expect() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expected++
}

// forget drops the refusals announced whose reply never went out (Reset).
func (w *replyWatch) forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expected = 0
}

// expectRefusal tells the connection's replyWatch that the next refusal
// it sees is relay's own, logged already.
func (s *session) expectRefusal() {
	if s.dc != nil {
		s.dc.replies.expect()
	}
}

// logLibraryRefusal logs a refusal go-smtp answered itself.
func (s *Server) logLibraryRefusal(client netip.Addr, reply string) {
	s.logger.Info("command refused", "client", client.String(), "reply", reply, "reason", "answered by the SMTP library before relay saw the command")
}
