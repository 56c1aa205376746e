package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	netmail "net/mail"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/upstream"
)

// TestSubject is the subject of a test email unless the user gives one.
const TestSubject = "relay test email"

// DefaultFrom is the sender of a test email through p: the profile's
// username when it is an address (Office 365 and Gmail accept mail only
// from the mailbox that logs in), else relay@ this machine's name.
func DefaultFrom(p *config.Profile) string {
	if strings.Contains(p.Username, "@") {
		return p.Username
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "relay@" + host
}

// Composed is a message relay writes itself: a test email or a bounce.
type Composed struct {
	From string // envelope and header sender
	To   string
	Data []byte // with CRLF line endings
}

// ComposeText builds a plain-text email, as the seed's test page and
// `relay test` send. Addresses must parse as RFC 5322 addresses; line
// breaks in the subject become spaces, so no field can smuggle a header.
func ComposeText(from, to, subject, body string, now time.Time) (*Composed, error) {
	fromAddr, err := netmail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", from, err)
	}
	toAddr, err := netmail.ParseAddress(to)
	if err != nil {
		return nil, fmt.Errorf("to %q: %w", to, err)
	}
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Name: fromAddr.Name, Address: fromAddr.Address}})
	h.SetAddressList("To", []*mail.Address{{Name: toAddr.Name, Address: toAddr.Address}})
	h.SetSubject(strings.Join(strings.Fields(subject), " "))
	if err := h.GenerateMessageID(); err != nil {
		return nil, err
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	var buf bytes.Buffer
	w, err := mail.CreateSingleInlineWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\r", "\n")
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	if _, err := io.WriteString(w, strings.ReplaceAll(body, "\n", "\r\n")); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return &Composed{From: fromAddr.Address, To: toAddr.Address, Data: buf.Bytes()}, nil
}

// RecipientError is SendTest's error when the upstream refused the
// recipient; Err is its reply (an *upstream.Error).
type RecipientError struct{ Err error }

func (e *RecipientError) Error() string { return e.Err.Error() }

func (e *RecipientError) Unwrap() error { return e.Err }

// SendTest sends msg (from ComposeText) through t at once, on a connection
// of its own and without the queue: the test email of `relay test` and of
// the admin page's Send Test Email. It returns the upstream's reply to the
// end of DATA. An error means the message was not sent: the connection,
// TLS, AUTH or the access token failed (that error), or the upstream
// refused the recipient (*RecipientError).
func SendTest(ctx context.Context, t Transport, msg *Composed) (string, error) {
	d, err := t.Open(ctx)
	if err != nil {
		return "", err
	}
	defer d.Close()
	res, err := d.Send(ctx, &upstream.Message{From: msg.From, To: []string{msg.To}, Body: bytes.NewReader(msg.Data), Size: int64(len(msg.Data))})
	if err != nil {
		return "", err
	}
	if len(res.Rcpts) != 1 {
		return "", fmt.Errorf("the transport answered for %d recipients, not 1", len(res.Rcpts))
	}
	if res.Rcpts[0] != nil {
		return "", &RecipientError{Err: res.Rcpts[0]}
	}
	return res.Reply, nil
}
