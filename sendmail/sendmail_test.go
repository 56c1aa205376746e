package sendmail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// submission is a Submission to u from cron@host.example at a fixed time.
func submission(u *testpeer.Upstream, rcpts ...string) Submission {
	return Submission{
		Relay:       u.Addr,
		RelaySource: "-smtp",
		Recipients:  rcpts,
		Hostname:    "host.example",
		User:        "cron",
		Now:         func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
}

// statusOf is the exit status an error of Send carries, 0 for nil.
func statusOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Send error %v is not a *sendmail.Error", err)
	}
	return e.Status
}

// TestSendCompletesTheMessage: -t takes To, Cc and Bcc, Bcc goes, bare
// names get @hostname (recipients and -f), and the From, Date and
// Message-ID a local submission lacks are added.
func TestSendCompletesTheMessage(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	s := submission(u, "root", "ops@example.com, OPS@example.com")
	s.Extract, s.FullName = true, "Cron Daemon"
	in := "To: Dev <dev@example.com>\nCc: backup\nBcc: hidden@example.com,\n secret@example.com\nSubject: nightly\n\nall done\n.\nnot sent without -i\n"
	res, err := Send(context.Background(), s, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	wantTo := []string{"root@host.example", "ops@example.com", "dev@example.com", "backup@host.example", "hidden@example.com", "secret@example.com"}
	if !reflect.DeepEqual(res.Recipients, wantTo) || res.Reply == "" {
		t.Errorf("Send = %+v; want recipients %q and relay's reply", res, wantTo)
	}
	m := u.WaitMessages(t, 1, 10*time.Second)[0]
	if m.From != "cron@host.example" || !reflect.DeepEqual(m.To, wantTo) {
		t.Errorf("envelope %s → %q; want cron@host.example → %q", m.From, m.To, wantTo)
	}
	data := string(m.Data)
	want := "To: Dev <dev@example.com>\r\nCc: backup\r\nSubject: nightly\r\n" +
		"From: \"Cron Daemon\" <cron@host.example>\r\nDate: Tue, 02 Jan 2024 03:04:05 +0000\r\nMessage-ID: <1704164645."
	if !strings.HasPrefix(data, want) || !strings.HasSuffix(data, "@host.example>\r\n\r\nall done\r\n") {
		t.Errorf("message:\n%s\nwant it to start with\n%s", data, want)
	}

	// -f root is root@hostname; -f "" is the null sender, with a From
	// header of the user; -i keeps a lone dot.
	for i, tc := range []struct{ from, envelope, header string }{
		{"root", "root@host.example", "From: <root@host.example>\r\n"},
		{"", "", "From: <cron@host.example>\r\n"},
	} {
		s := submission(u, "ops@example.com")
		s.From, s.FromSet, s.IgnoreDots = tc.from, true, true
		if _, err := Send(context.Background(), s, strings.NewReader("Subject: x\n\n.\nafter\n")); err != nil {
			t.Fatalf("-f %q: %v", tc.from, err)
		}
		m := u.WaitMessages(t, i+2, 10*time.Second)[i+1]
		if m.From != tc.envelope || !strings.Contains(string(m.Data), tc.header) || !strings.HasSuffix(string(m.Data), "\r\n.\r\nafter\r\n") {
			t.Errorf("-f %q: envelope sender %q, message:\n%s\nwant %q and %q", tc.from, m.From, m.Data, tc.envelope, tc.header)
		}
	}
}

// eightBitBody is n bytes of text lines up to 998 bytes long (RFC 5321
// §4.5.3.1.6; relay refuses longer ones): UTF-8,
// 8-bit bytes, lines that start with a dot; no CR and no NUL.
func eightBitBody(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	var b bytes.Buffer
	for b.Len() < n {
		switch r.IntN(3) {
		case 0:
			b.WriteString("Grüße, ½ °C — ")
		case 1:
			b.WriteByte('.')
		}
		for i := r.IntN(960); i > 0; i-- {
			c := byte(0x20 + r.IntN(0xe0))
			if c == 0x7f {
				c = '\t'
			}
			b.WriteByte(c)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// TestSendSizes: bodies across buffer boundaries, 8-bit, with long lines,
// arrive whole (LF as CRLF), from readers that return a byte or half a
// buffer at a time.
func TestSendSizes(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	readers := []func(io.Reader) io.Reader{iotest.OneByteReader, iotest.HalfReader, iotest.DataErrReader}
	for i, size := range []int{1, 4<<10 - 1, 4 << 10, 32 << 10, 64<<10 + 1, 1 << 20, 5<<20 + 7} {
		body := eightBitBody(size)
		in := append([]byte("Subject: size\nFrom: app@example.com\nDate: x\nMessage-ID: <m@x>\n\n"), body...)
		s := submission(u, "ops@example.com")
		s.IgnoreDots = true
		read := readers[i%len(readers)]
		if size > 64<<10 && i%len(readers) == 0 {
			read = iotest.HalfReader // a byte at a time is slow under -race
		}
		if _, err := Send(context.Background(), s, read(bytes.NewReader(in))); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		m := u.WaitMessages(t, i+1, 30*time.Second)[i]
		want := "Subject: size\r\nFrom: app@example.com\r\nDate: x\r\nMessage-ID: <m@x>\r\n\r\n" + strings.ReplaceAll(string(body), "\n", "\r\n")
		if !strings.HasSuffix(want, "\n") {
			want += "\r\n" // SMTP ends the data with a line ending
		}
		if string(m.Data) != want {
			t.Fatalf("%d bytes: the upstream got %d bytes; want %d", size, len(m.Data), len(want))
		}
	}
}

// TestSendFailures: each failure carries sendmail's exit status, and
// nothing is sent.
func TestSendFailures(t *testing.T) {
	refused := map[string]*smtp.SMTPError{
		"gone@example.com": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"},
		"full@example.com": {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"},
	}
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		OnRcpt: func(to string) error {
			if e := refused[to]; e != nil {
				return e
			}
			return nil
		},
		OnData: func(m testpeer.Message) error {
			if bytes.Contains(m.Data, []byte("virus")) {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Refused"}
			}
			return nil
		},
	})
	down := submission(u, "ops@example.com")
	down.Relay, down.RelaySource = testpeer.FreeAddr(t), "server.listen in relay.toml"
	extract := submission(u)
	extract.Extract = true
	msg := "Subject: x\n\nbody\n"
	for _, tc := range []struct {
		name   string
		s      Submission
		in     io.Reader
		status int
		says   string
	}{
		{"550 recipient", submission(u, "ok@example.com", "gone@example.com"), strings.NewReader(msg), ExNoPerm, "recipient <gone@example.com>: SMTP error 550: No such user"},
		{"452 recipient", submission(u, "full@example.com"), strings.NewReader(msg), ExTempFail, "452"},
		{"554 after DATA", submission(u, "ok@example.com"), strings.NewReader("Subject: virus\n\n"), ExNoPerm, "did not take the message: SMTP error 554: Refused"},
		{"relay down", down, strings.NewReader(msg), ExTempFail, "cannot reach relay at " + down.Relay + " (server.listen in relay.toml): connect: connection refused; is relay running?"},
		{"no recipients", submission(u), strings.NewReader(msg), ExDataErr, "no recipients"},
		{"-t without recipient headers", extract, strings.NewReader(msg), ExDataErr, "no recipients"},
		{"-t with a broken To", extract, strings.NewReader("To: <unterminated@example.com\n\n"), ExDataErr, "To header"},
		{"bad recipient argument", submission(u, "a@b@c"), strings.NewReader(msg), ExUsage, `recipient "a@b@c"`},
		{"header over 1 MiB", submission(u, "ok@example.com"), strings.NewReader("Subject: " + strings.Repeat("x", maxHeaderBytes) + "\n\n"), ExDataErr, "larger than"},
		{"stdin fails in the header", submission(u, "ok@example.com"), iotest.ErrReader(errors.New("EIO")), ExIOErr, "read the message on stdin: EIO"},
		{"stdin fails in the body", submission(u, "ok@example.com"), io.MultiReader(strings.NewReader(msg+strings.Repeat("body\n", 20000)), iotest.ErrReader(errors.New("EIO"))), ExIOErr, "EIO; nothing was sent"},
	} {
		_, err := Send(context.Background(), tc.s, tc.in)
		if got := statusOf(t, err); got != tc.status || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: Send = %v (status %d); want status %d saying %q", tc.name, err, got, tc.status, tc.says)
		}
	}
	if n := len(u.Messages()); n != 0 {
		t.Errorf("the upstream got %d messages; want none", n)
	}
}

// endless is a message body that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "line of an endless body\n"[i%24]
	}
	return len(p), nil
}

// TestSendCanceled: a submission whose context ends is cut short, even in
// the middle of the body, and sends nothing.
func TestSendCanceled(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := Send(ctx, submission(u, "ops@example.com"), io.MultiReader(strings.NewReader("Subject: x\n\n"), endless{}))
		done <- err
	}()
	select {
	case err := <-done:
		if statusOf(t, err) != ExTempFail {
			t.Errorf("Send after cancel = %v; want a temporary failure", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Send goes on after its context ended")
	}
	if n := len(u.Messages()); n != 0 {
		t.Errorf("the upstream got %d messages; want none", n)
	}
}
