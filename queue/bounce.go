package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
)

// maxBounceHeaders caps the original header section quoted in a bounce.
const maxBounceHeaders = 64 << 10

// bounce queues a delivery status notification (RFC 3464) for the
// recipients that failed, to the message's sender, through the message's
// own profile. A bounce is never sent for a bounce or to the null sender
// (RFC 3464 §2, RFC 5321 §4.5.5), so bounces cannot loop. An error means
// that the bounce is not queued.
func (q *Queue) bounce(env *spool.Envelope, failed []spool.Recipient, now time.Time) error {
	log := q.logger.With("id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", len(failed), "size", env.Size)
	q.events(Event{Kind: EventBounced, ID: env.ID, Profile: env.Profile, Err: failed[0].Reply.Text})
	if env.Bounce || env.From == "" {
		log.Warn("undeliverable bounce discarded", "reply", failed[0].Reply.Text)
		return nil
	}
	cfg := q.profiles.Config()
	// RFC 5321 §4.5.5: a DSN goes out with the null reverse-path. An
	// upstream that takes mail only from its authenticated mailbox (Office
	// 365, Gmail) refuses that, so such profiles send from the mailbox.
	envFrom, hdrFrom := "", "MAILER-DAEMON@"+cfg.Server.Hostname
	if p := cfg.Profile(env.Profile); p != nil && strings.Contains(p.Username, "@") {
		envFrom, hdrFrom = p.Username, p.Username
	}
	data, err := buildDSN(dsn{
		reportingMTA: cfg.Server.Hostname,
		from:         hdrFrom,
		env:          env,
		failed:       failed,
		headers:      q.originalHeaders(env.ID),
		now:          now,
	})
	if err != nil {
		log.Error("cannot build a bounce", "error", err)
		return err
	}
	bounceEnv := &spool.Envelope{Profile: env.Profile, From: envFrom, Recipients: []spool.Recipient{{Addr: env.From}}, Bounce: true}
	// Not cut short by Close: the failure is recorded by now, and the
	// bounce is all that tells the sender.
	w, err := q.spool.Create(context.WithoutCancel(q.abort), bounceEnv)
	if err == nil {
		if _, err = w.Write(data); err != nil {
			w.Abort()
		} else {
			_, err = w.Commit(context.WithoutCancel(q.abort))
		}
	}
	if err != nil {
		log.Error("cannot queue a bounce; the message stays queued and is tried again", "error", err)
		return err
	}
	log.Info("bounced", "bounce_id", bounceEnv.ID, "to", env.From, "reply", failed[0].Reply.Text, oauth.ReplyHintAttr(failed[0].Reply.Text))
	q.Enqueue(bounceEnv)
	return nil
}

// originalHeaders reads the header section of a queued message: the
// message as received, which the spool gives without its envelope line.
func (q *Queue) originalHeaders(id string) []byte {
	body, err := q.spool.Open(id)
	if err != nil {
		return nil
	}
	defer body.Close()
	var buf bytes.Buffer
	r := bufio.NewReader(io.LimitReader(body, maxBounceHeaders))
	for {
		line, err := r.ReadString('\n')
		if line == "\r\n" || line == "\n" {
			break
		}
		buf.WriteString(line)
		if err != nil {
			break
		}
	}
	return buf.Bytes()
}

type dsn struct {
	reportingMTA string
	from         string // header From
	env          *spool.Envelope
	failed       []spool.Recipient
	headers      []byte
	now          time.Time
}

// statusOf is the Status of a failed recipient in a DSN (RFC 3464 §2.3.4):
// the enhanced status code (RFC 3463) of its reply, else 5.0.0, other
// undefined status.
func statusOf(r spool.Reply) string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	return "5.0.0"
}

// buildDSN writes a multipart/report (RFC 6522) with a human-readable part,
// the message/delivery-status part (RFC 3464 §2) and the original headers.
func buildDSN(d dsn) ([]byte, error) {
	var h mail.Header
	h.SetDate(d.now)
	h.SetAddressList("From", []*mail.Address{{Name: "Mail Delivery System", Address: d.from}})
	h.SetAddressList("To", []*mail.Address{{Address: d.env.From}})
	h.SetSubject("Undelivered Mail Returned to Sender")
	if err := h.GenerateMessageID(); err != nil {
		return nil, err
	}
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834: never answer this automatically
	h.Set("Content-Type", "multipart/report; report-type=delivery-status")

	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h.Header)
	if err != nil {
		return nil, err
	}
	write := func(contentType string, body []byte) error {
		var ph textproto.Header
		ph.Set("Content-Type", contentType)
		if strings.HasPrefix(contentType, "text/plain") {
			ph.Set("Content-Transfer-Encoding", "quoted-printable")
		}
		pw, err := w.CreatePart(message.Header{Header: ph})
		if err != nil {
			return err
		}
		if _, err := pw.Write(body); err != nil {
			return err
		}
		return pw.Close()
	}

	var text strings.Builder
	fmt.Fprintf(&text, "This is relay at %s.\r\n\r\nYour message could not be delivered to the recipients below.\r\n", d.reportingMTA)
	fmt.Fprintf(&text, "It was sent on %s through the email profile %q.\r\n\r\n", d.env.Arrived.Format(time.RFC1123Z), d.env.Profile)
	for _, r := range d.failed {
		fmt.Fprintf(&text, "<%s>: %s\r\n", r.Addr, oneLineText(r.Reply.Text))
	}
	if err := write("text/plain; charset=utf-8", []byte(text.String())); err != nil {
		return nil, err
	}

	var status strings.Builder
	fmt.Fprintf(&status, "Reporting-MTA: dns; %s\r\n", d.reportingMTA)
	fmt.Fprintf(&status, "X-Relay-Queue-ID: %s\r\n", d.env.ID)
	fmt.Fprintf(&status, "Arrival-Date: %s\r\n", d.env.Arrived.Format(time.RFC1123Z))
	for _, r := range d.failed {
		fmt.Fprintf(&status, "\r\nFinal-Recipient: rfc822; %s\r\n", r.Addr)
		fmt.Fprintf(&status, "Action: failed\r\n")
		fmt.Fprintf(&status, "Status: %s\r\n", statusOf(r.Reply))
		fmt.Fprintf(&status, "Diagnostic-Code: smtp; %s\r\n", oneLineText(r.Reply.Text))
		fmt.Fprintf(&status, "Last-Attempt-Date: %s\r\n", d.now.Format(time.RFC1123Z))
	}
	if err := write("message/delivery-status", []byte(status.String())); err != nil {
		return nil, err
	}
	if len(d.headers) > 0 {
		if err := write("text/rfc822-headers", d.headers); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// oneLineText keeps a reply on one header line: no line breaks or
// control characters.
func oneLineText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
