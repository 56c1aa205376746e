package clients

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

// recipient is every case's envelope and header recipient.
const recipient = "ops@example.com"

// bodyText is every message's text part: 8-bit UTF-8, as alarm texts are.
const bodyText = "Tank 4 high level — 97 °C.\nAcknowledge in the HMI, Überlauf möglich.\n"

// attachmentSize is the binary attachment of the big messages: 5 MiB,
// larger than every internal buffer of relay.
const attachmentSize = 5 << 20

// files are the inputs every client reads: the body text and the
// attachment.
type files struct {
	body       string // bodyText
	attachment string // attachmentSize bytes of noise, every byte value
	data       []byte // the attachment's content
}

// writeInputs writes the input files into dir.
func writeInputs(t *testing.T, dir string) files {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{'r', 'e', 'l', 'a', 'y'})
	f := files{
		body:       filepath.Join(dir, "body.txt"),
		attachment: filepath.Join(dir, "trend-export.bin"),
		data:       make([]byte, attachmentSize),
	}
	rng.Read(f.data)
	if err := os.WriteFile(f.body, []byte(bodyText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.attachment, f.data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// expected is what a case's message must look like where it arrives.
type expected struct {
	from, subject string
	// protocol is the keyword relay's Received header must carry (RFC
	// 3848): ESMTPSA proves that relay saw both TLS and a login.
	protocol   string
	attachment []byte // nil: the message has none
}

// checkMessage checks one arrived message: relay's Received header on
// top, the headers the client wrote, the text decoded, and the attachment
// decoded and equal to the one sent byte for byte.
func checkMessage(t *testing.T, raw []byte, want expected) {
	t.Helper()
	// The Maildir transport puts Return-Path first (RFC 5322 §3.6.7).
	top := bytes.TrimPrefix(raw, []byte("Return-Path: <"+want.from+">\n"))
	received := top[:min(len(top), 300)]
	if !bytes.HasPrefix(top, []byte("Received: from ")) || !bytes.Contains(received, []byte("by relay.test (relay) with "+want.protocol+" id ")) {
		t.Errorf("message does not start with relay's Received header with %s: %.300q", want.protocol, raw)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	h := m.Header
	for _, key := range []string{"Received", "From", "To", "Subject", "Date", "Message-Id", "Mime-Version"} {
		if h.Get(key) == "" {
			t.Errorf("header %s missing; header: %v", key, h)
		}
	}
	if h.Get("Subject") != want.subject {
		t.Errorf("Subject = %q; want %q", h.Get("Subject"), want.subject)
	}
	if a, err := mail.ParseAddress(h.Get("From")); err != nil || a.Address != want.from {
		t.Errorf("From = %q (%v); want %s", h.Get("From"), err, want.from)
	}
	if a, err := mail.ParseAddress(h.Get("To")); err != nil || a.Address != recipient {
		t.Errorf("To = %q (%v); want %s", h.Get("To"), err, recipient)
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}

	text, attachments := readParts(t, raw)
	if got := normalize(text); got != normalize(bodyText) {
		t.Errorf("text = %q; want %q", got, normalize(bodyText))
	}
	switch a := want.attachment; {
	case a == nil && len(attachments) != 0:
		t.Errorf("%d attachments; want none", len(attachments))
	case a != nil && len(attachments) != 1:
		t.Errorf("%d attachments; want 1", len(attachments))
	case a != nil && !bytes.Equal(attachments[0], a):
		t.Errorf("attachment: %d bytes, differs from the %d sent at byte %d", len(attachments[0]), len(a), firstDiff(attachments[0], a))
	}
}

// readParts decodes a message (multipart or not) into its text and its
// attachments, undoing each part's transfer encoding.
func readParts(t *testing.T, raw []byte) (text string, attachments [][]byte) {
	t.Helper()
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read MIME: %v", err)
	}
	for i := 0; i < 10; i++ {
		p, err := r.NextPart()
		if err == io.EOF {
			return text, attachments
		}
		if err != nil {
			t.Fatalf("read MIME part %d: %v", i, err)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("decode MIME part %d: %v", i, err)
		}
		if h, ok := p.Header.(*gomail.AttachmentHeader); ok {
			ct, _, _ := h.ContentType()
			if ct != "application/octet-stream" {
				t.Errorf("attachment %d: Content-Type %q; want application/octet-stream", i, ct)
			}
			attachments = append(attachments, body)
			continue
		}
		if ct, _, _ := p.Header.(*gomail.InlineHeader).ContentType(); ct != "" && ct != "text/plain" {
			t.Errorf("inline part %d has Content-Type %q; want text/plain", i, ct)
		}
		text += string(body)
	}
	t.Fatal("more than 10 MIME parts")
	return "", nil
}

// normalize makes line endings LF and drops trailing blank lines, which
// clients add or keep as they like.
func normalize(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.TrimRight(s, "\n") + "\n"
}

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// composed returns a complete message for the clients that only transport
// one (msmtp, curl -T): headers, the text and, with attachment, a
// multipart/mixed body with the attachment in base64.
func composed(t *testing.T, from, subject, attachment string) []byte {
	t.Helper()
	var h gomail.Header
	h.SetDate(time.Now())
	h.SetAddressList("From", []*gomail.Address{{Address: from}})
	h.SetAddressList("To", []*gomail.Address{{Address: recipient}})
	h.SetSubject(subject)
	if err := h.GenerateMessageID(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	write := func() error {
		if attachment == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w, err := gomail.CreateSingleInlineWriter(&buf, h)
			if err != nil {
				return err
			}
			io.WriteString(w, bodyText)
			return w.Close()
		}
		mw, err := gomail.CreateWriter(&buf, h)
		if err != nil {
			return err
		}
		var th gomail.InlineHeader
		th.Set("Content-Type", "text/plain; charset=utf-8")
		tw, err := mw.CreateSingleInline(th)
		if err != nil {
			return err
		}
		io.WriteString(tw, bodyText)
		tw.Close()
		var ah gomail.AttachmentHeader
		ah.Set("Content-Type", "application/octet-stream")
		ah.SetFilename(filepath.Base(attachment))
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		f, err := os.Open(attachment)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(aw, f); err != nil {
			return err
		}
		aw.Close()
		return mw.Close()
	}
	if err := write(); err != nil {
		t.Fatalf("compose %s: %v", subject, err)
	}
	return buf.Bytes()
}

// sizeName names a case's message size.
func sizeName(big bool) string {
	if big {
		return fmt.Sprintf("%dMB", attachmentSize>>20)
	}
	return "small"
}
