package relay

import (
	"bytes"
	"fmt"
	"io"
	netmail "net/mail"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/relaymail/relay/config"
)

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
