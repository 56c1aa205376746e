// Package sendmail is the message handling of `relay sendmail`, the
// sendmail(8) interface that cron, PHP's mail() and scripts call: it reads
// the message on stdin, takes its recipients from the arguments and, with
// -t, from its header; removes Bcc; adds the From, Date and Message-ID a
// local submission lacks; qualifies bare names with @hostname; and submits
// the message to the running relay over SMTP, streamed. Every failure
// carries the exit status sendmail(8) gives it (<sysexits.h>). The flags
// themselves are parsed by the command.
package sendmail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/user"
	"strings"
	"time"
)

// Exit statuses of sendmail(8), from <sysexits.h>: cron, PHP's mail() and
// scripts act on them.
const (
	ExUsage    = 64 // EX_USAGE: a bad flag or recipient argument
	ExDataErr  = 65 // EX_DATAERR: no recipients, or a header we cannot read
	ExIOErr    = 74 // EX_IOERR: reading the message on stdin failed
	ExTempFail = 75 // EX_TEMPFAIL: relay is not running or refused for now; try again later
	ExNoPerm   = 77 // EX_NOPERM: relay refused the message for good (5xx)
	ExConfig   = 78 // EX_CONFIG: the configuration file cannot be read
)

// maxHeaderBytes bounds the header section read before the message is
// sent: -t needs all of it to know the recipients.
const maxHeaderBytes = 1 << 20

// Submission is one message for relay, as sendmail's flags describe it.
type Submission struct {
	// Relay is relay's SMTP address (host:port); RelaySource says where it
	// came from ("server.listen in /etc/relay/relay.toml"), for the error
	// when nothing answers there.
	Relay, RelaySource string
	// From is the envelope sender (-f, -r); when FromSet, "" is the null
	// sender <>. Unset: User@Hostname. A bare name gets @Hostname.
	From    string
	FromSet bool
	// FullName (-F) is the sender's name in a From header added when the
	// message has none.
	FullName string
	// Recipients are the arguments, each one address or a list of them.
	Recipients []string
	// Extract (-t) adds the addresses of To, Cc and Bcc (or of their
	// Resent- forms when present).
	Extract bool
	// IgnoreDots (-i, -oi): a line with a lone "." does not end the message.
	IgnoreDots bool
	// Hostname qualifies bare names and names the Message-ID; default this
	// machine's name.
	Hostname string
	// User is who runs sendmail, the default sender's local part; default
	// the current user.
	User string
	// Now stamps the Date header; default time.Now.
	Now func() time.Time
}

// Result is what relay took.
type Result struct {
	// Reply is relay's answer to the end of DATA.
	Reply string
	// Recipients are the envelope recipients, without repeats.
	Recipients []string
}

// Error is why a message was not sent, with sendmail's exit status for it.
type Error struct {
	Status int // one of the Ex constants
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

func fail(status int, format string, a ...any) *Error {
	return &Error{Status: status, Err: fmt.Errorf(format, a...)}
}

// Send reads the message on stdin and submits it to relay as s says. The
// header section (at most 1 MiB) is read first; the body is streamed, so
// that a message of any size costs a few buffers. A failure is an *Error:
// nothing was sent.
func Send(ctx context.Context, s Submission, stdin io.Reader) (*Result, error) {
	s = s.withDefaults()
	sender := s.From
	switch {
	case !s.FromSet:
		sender = s.User + "@" + s.Hostname
	case sender != "" && !strings.Contains(sender, "@"):
		sender += "@" + s.Hostname // -f root, as cronie passes it: root@host, as sendmail qualifies it
	}
	var rcpts []string
	for _, a := range s.Recipients {
		list, err := parseAddrList(a, s.Hostname)
		if err != nil {
			return nil, fail(ExUsage, "recipient %q: %v", a, err)
		}
		rcpts = append(rcpts, list...)
	}

	in := bufio.NewReaderSize(stdin, 64<<10)
	h, err := readHeader(in, !s.IgnoreDots)
	if err != nil {
		var de dataError
		if errors.As(err, &de) {
			return nil, fail(ExDataErr, "%v", err)
		}
		return nil, fail(ExIOErr, "read the message on stdin: %v", err)
	}
	if s.Extract {
		list, err := h.recipients(s.Hostname)
		if err != nil {
			return nil, fail(ExDataErr, "%v", err)
		}
		rcpts = append(rcpts, list...)
	}
	rcpts = dedupe(rcpts)
	if len(rcpts) == 0 {
		return nil, fail(ExDataErr, "no recipients: give them as arguments, or use -t to take them from the To, Cc and Bcc headers")
	}
	fromHeader := sender
	if fromHeader == "" {
		fromHeader = s.User + "@" + s.Hostname
	}
	h.complete(&mail.Address{Name: s.FullName, Address: fromHeader}, s.Hostname, s.Now())

	body := &bodyReader{r: in, stopAtDot: !s.IgnoreDots, done: h.end}
	reply, err := submit(ctx, s.Relay, s.Hostname, sender, rcpts, h.bytes(), body)
	if err != nil {
		var re *readError
		switch {
		case errors.As(err, &re):
			return nil, fail(ExIOErr, "read the message on stdin: %v; nothing was sent", re.err)
		case isUnreachable(err):
			return nil, fail(ExTempFail, "cannot reach relay at %s (%s): %v; is relay running? (systemctl status relay, or relay serve)", s.Relay, s.RelaySource, unwrapOp(err))
		}
		return nil, &Error{Status: exitForSMTP(err), Err: fmt.Errorf("relay at %s did not take the message: %w", s.Relay, err)}
	}
	return &Result{Reply: reply, Recipients: rcpts}, nil
}

func (s Submission) withDefaults() Submission {
	if s.Hostname == "" {
		s.Hostname = localHostname()
	}
	if s.User == "" {
		s.User = localUser()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	return s
}

func localHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// localUser is the name of the user running sendmail, as sendmail uses
// it for the default sender.
func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, env := range []string{"USER", "LOGNAME"} {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return "nobody"
}

// parseAddrList reads a list of addresses, from an argument or a header.
// A bare local name such as "root" gets @host, as sendmail qualifies it.
func parseAddrList(s, host string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if list, err := mail.ParseAddressList(s); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case !strings.ContainsAny(part, "@<>\" \t()[]:;\\"):
			out = append(out, part+"@"+host)
		default:
			a, err := mail.ParseAddress(part)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", part, err)
			}
			out = append(out, a.Address)
		}
	}
	return out, nil
}

// dedupe drops repeated addresses (compared without case), keeping the
// first.
func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0]
	for _, a := range list {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}
