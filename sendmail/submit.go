package sendmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// submit sends one message to relay over SMTP (RFC 5321 §3.3) and
// returns relay's reply. If relay refuses a recipient, nothing is sent:
// sendmail's caller then sees one clear outcome and may retry without
// sending twice. When ctx ends the connection is closed, and relay drops
// the message it did not see end.
func submit(ctx context.Context, addr, helo, from string, rcpts []string, head []byte, body io.Reader) (string, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return "", err
	}
	utf8 := !isASCII(from)
	for _, r := range rcpts {
		utf8 = utf8 || !isASCII(r)
	}
	if err := c.Mail(from, &smtp.MailOptions{UTF8: utf8}); err != nil {
		return "", fmt.Errorf("sender <%s>: %w", from, err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			c.Reset()
			c.Quit()
			return "", fmt.Errorf("recipient <%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(head); err != nil {
		return "", err
	}
	if _, err := io.Copy(w, body); err != nil {
		// Closing the connection without the final dot makes relay drop
		// the message.
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	c.Quit()
	return resp.StatusText, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isUnreachable reports whether relay could not be reached at all.
func isUnreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// unwrapOp drops the "dial tcp ADDR:" prefix the message already says.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// exitForSMTP: a 5xx reply is permanent (EX_NOPERM); anything else,
// 4xx or a connection that broke, is worth trying again (EX_TEMPFAIL).
func exitForSMTP(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		return ExNoPerm
	}
	return ExTempFail
}
