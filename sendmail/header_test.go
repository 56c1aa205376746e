package sendmail

import (
	"bufio"
	"io"
	"net/mail"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestReadHeaderAndRecipients(t *testing.T) {
	in := "From sender@example.com Mon Jan  1 00:00:00 2024\n" +
		"To: Ops <ops@example.com>, dev@example.com\n" +
		"Cc: root\n" +
		"Bcc: hidden@example.com,\n" +
		"\tsecret@example.com\n" +
		"Subject: report\n" +
		"\n" +
		"body\n"
	r := bufio.NewReader(strings.NewReader(in))
	h, err := readHeader(r, true)
	if err != nil {
		t.Fatal(err)
	}
	rcpts, err := h.recipients("host.example")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ops@example.com", "dev@example.com", "root@host.example", "hidden@example.com", "secret@example.com"}
	if !reflect.DeepEqual(rcpts, want) {
		t.Errorf("recipients = %q; want %q", rcpts, want)
	}
	h.complete(&mail.Address{Name: "Me", Address: "me@host.example"}, "host.example", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	head := string(h.bytes())
	for _, s := range []string{"Bcc", "hidden@", "secret@", "From sender@example.com"} {
		if strings.Contains(head, s) {
			t.Errorf("header holds %q:\n%s", s, head)
		}
	}
	for _, s := range []string{"To: Ops <ops@example.com>, dev@example.com\n", "Subject: report\n", "From: \"Me\" <me@host.example>\r\n", "Date: Tue, 02 Jan 2024 03:04:05 +0000\r\n", "Message-ID: <1704164645."} {
		if !strings.Contains(head, s) {
			t.Errorf("header lacks %q:\n%s", s, head)
		}
	}
	if !strings.HasSuffix(head, "\n\r\n") {
		t.Errorf("header does not end with an empty line: %q", head)
	}

	// Resent-* decide when present (RFC 5322 §3.6.6).
	h, _ = readHeader(bufio.NewReader(strings.NewReader("To: a@example.com\nResent-To: b@example.com\nResent-Bcc: c@example.com\n\n")), true)
	if rcpts, _ := h.recipients("h"); !reflect.DeepEqual(rcpts, []string{"b@example.com", "c@example.com"}) {
		t.Errorf("resent recipients = %q", rcpts)
	}
	// A Date and Message-ID already there stay alone.
	h, _ = readHeader(bufio.NewReader(strings.NewReader("Date: x\nMessage-Id: <y@z>\nFrom: f@example.com\n\n")), true)
	h.complete(&mail.Address{Address: "me@h"}, "h", time.Now())
	if got := string(h.bytes()); got != "Date: x\nMessage-Id: <y@z>\nFrom: f@example.com\n\r\n" {
		t.Errorf("complete changed a full header: %q", got)
	}
	// An unreadable To: is a data error.
	h, _ = readHeader(bufio.NewReader(strings.NewReader("To: <unterminated@example.com\n\n")), true)
	if _, err := h.recipients("h"); err == nil {
		t.Error("recipients of a broken To: = nil error")
	}
}

func TestReadHeaderEdges(t *testing.T) {
	for _, tc := range []struct {
		name, in       string
		stopAtDot      bool
		fields         int
		first          string
		end            bool
		wantBodyOnRest string
	}{
		{"no empty line", "Subject: x\nHello there\nmore\n", true, 1, "Hello there\n", false, "more\n"},
		{"headers only", "Subject: x\n", true, 1, "", true, ""},
		{"lone dot ends", "Subject: x\n.\nnot read\n", true, 1, "", true, ""},
		{"lone dot kept with -i", "Subject: x\n.\nread\n", false, 1, ".\n", false, "read\n"},
		{"empty input", "", true, 0, "", true, ""},
		{"crlf", "Subject: x\r\n\r\nbody\r\n", true, 1, "", false, "body\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(tc.in))
			h, err := readHeader(r, tc.stopAtDot)
			if err != nil {
				t.Fatal(err)
			}
			if len(h.fields) != tc.fields || string(h.first) != tc.first || h.end != tc.end {
				t.Errorf("fields %d, first %q, end %v; want %d, %q, %v", len(h.fields), h.first, h.end, tc.fields, tc.first, tc.end)
			}
			// Small reads: lines cross Read calls.
			if rest := readBy(&bodyReader{r: r, stopAtDot: tc.stopAtDot, done: h.end}, 3); rest != tc.wantBodyOnRest {
				t.Errorf("body = %q; want %q", rest, tc.wantBodyOnRest)
			}
		})
	}
	big := "Subject: " + strings.Repeat("x", maxHeaderBytes) + "\n\n"
	if _, err := readHeader(bufio.NewReader(strings.NewReader(big)), true); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("readHeader(1 MiB field) = %v; want a size error", err)
	}
}

// readBy reads r to its end (or error) with reads of size bytes.
func readBy(r io.Reader, size int) string {
	var out strings.Builder
	buf := make([]byte, size)
	for i := 0; i < 1<<20; i++ {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return out.String()
}

func TestBodyReaderDots(t *testing.T) {
	in := "line\n..two dots stay\n.not alone\n.\r\nafter\n"
	body := func(in string, stopAtDot bool) *bodyReader {
		return &bodyReader{r: bufio.NewReaderSize(strings.NewReader(in), 16), stopAtDot: stopAtDot}
	}
	for size := 1; size <= 8; size++ {
		if got := readBy(body(in, true), size); got != "line\n..two dots stay\n.not alone\n" {
			t.Errorf("without -i, reads of %d: %q", size, got)
		}
		if got := readBy(body(in, false), size); got != in {
			t.Errorf("with -i, reads of %d: %q", size, got)
		}
	}
	if err := iotest.TestReader(body(in, true), []byte("line\n..two dots stay\n.not alone\n")); err != nil {
		t.Error(err)
	}
	// A line longer than the buffer that ends in a lone dot is no lone dot.
	long := strings.Repeat("a", 40) + ".\nnext\n"
	if got := readBy(body(long, true), 7); got != long {
		t.Errorf("long line: %q", got)
	}
}
