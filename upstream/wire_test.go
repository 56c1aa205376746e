package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// recordingDialer keeps every write the client makes, one entry per
// Write call, so tests can see what went out together.
type recordingDialer struct {
	mu     sync.Mutex
	writes []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, d: d}, nil
}

func (d *recordingDialer) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.writes...)
}

type recordingConn struct {
	net.Conn
	d *recordingDialer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.d.mu.Lock()
	c.d.writes = append(c.d.writes, string(p))
	c.d.mu.Unlock()
	return c.Conn.Write(p)
}

// TestPipelinedEnvelopeInOneWrite: with PIPELINING, MAIL, every RCPT and
// (without CHUNKING) DATA leave in one write (RFC 2920 §3.1); a second
// message's RSET joins them.
func TestPipelinedEnvelopeInOneWrite(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Hide: []string{"CHUNKING"}, OnRcpt: func(to string) error {
		if to == "gone@example.com" {
			return &smtpErr550
		}
		return nil
	}})
	d := &recordingDialer{}
	s := newSender(t, profileFor(u), Options{Dialer: d})
	ctx := context.Background()
	c := dialConn(t, s)
	res, err := c.Send(ctx, message("b@example.com", "gone@example.com", "c@example.com"))
	if err != nil || res.Accepted() != 2 || res.Rcpts[1] == nil {
		t.Fatalf("Send() = %+v, %v; want two accepted, gone@ refused", res, err)
	}
	c.dirty = true // as after a transaction left open
	if _, err := c.Send(ctx, message("b@example.com")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"MAIL FROM:<a@example.com> SIZE=", // no size given: no SIZE=
		"RCPT TO:<b@example.com>\r\nRCPT TO:<gone@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n",
		"RSET\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n",
	}
	writes := strings.Join(d.all(), "\x00")
	if strings.Contains(writes, want[0]) {
		t.Errorf("MAIL carried SIZE= without a size:\n%q", writes)
	}
	for _, w := range want[1:] {
		if !strings.Contains(writes, w) {
			t.Errorf("no single write holds %q; writes:\n%q", w, d.all())
		}
	}
	if got := len(u.Messages()); got != 2 {
		t.Fatalf("upstream got %d messages; want 2", got)
	}
}

// TestBDATWithoutDotStuffing: with CHUNKING the message goes in BDAT
// chunks as it is, the last one marked LAST (RFC 3030 §2).
func TestBDATWithoutDotStuffing(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	d := &recordingDialer{}
	s := newSender(t, profileFor(u), Options{Dialer: d})
	body := []byte("Subject: dots\r\n\r\n.\r\n..\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", chunkSize/100+10))
	if _, err := s.Send(context.Background(), &Message{From: "a@example.com", To: []string{"b@example.com"}, Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	writes := strings.Join(d.all(), "")
	if strings.Contains(writes, "DATA\r\n") || !strings.Contains(writes, "BDAT 65536\r\nSubject: dots\r\n\r\n.\r\n..\r\n") ||
		!strings.Contains(writes, fmt.Sprintf("BDAT %d LAST\r\n", len(body)-chunkSize)) {
		t.Errorf("client wrote %q…; want two BDAT chunks, the second LAST, no dot-stuffing", clip(writes))
	}
	if m := u.Messages(); len(m) != 1 || !bytes.Equal(m[0].Data, body) {
		t.Fatalf("upstream got %d messages, want the body unchanged", len(m))
	}
}

// TestNoCancelAfterFinalReply: after a 535 the client never sends "*"
// (RFC 4954 §4: "*" answers a 334 only); Postfix answers one with "221
// 2.7.0 Error: I can break rules, too" and logs a warning.
func TestNoCancelAfterFinalReply(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Users: map[string]string{"relay@example.com": "right"}, Mechanisms: []string{mech}})
			d := &recordingDialer{}
			s := newSender(t, profileFor(u, withAuth("relay@example.com", "wrong")), Options{Dialer: d})
			_, err := s.Send(context.Background(), message("b@example.com"))
			var ue *Error
			if !asError(err, &ue) || ue.Step != StepAuth || ue.Code != 535 {
				t.Fatalf("Send() = %v; want the 535 at AUTH", err)
			}
			for _, w := range d.all() {
				if strings.HasPrefix(w, "*") || strings.Contains(w, "\r\n*\r\n") {
					t.Fatalf("client sent %q after the final reply; writes: %q", w, d.all())
				}
			}
		})
	}
}

// TestSMTPUTF8RefusedBeforeMAIL: a message that needs SMTPUTF8 cannot go
// to a server without it, ever: a permanent 553 5.6.7, and no MAIL FROM
// goes out.
func TestSMTPUTF8RefusedBeforeMAIL(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Hide: []string{"SMTPUTF8"}})
	d := &recordingDialer{}
	s := newSender(t, profileFor(u), Options{Dialer: d})
	_, err := s.Send(context.Background(), &Message{From: "a@example.com", To: []string{"jörg@example.com"}, Body: strings.NewReader(testBody), UTF8: true})
	var ue *Error
	if !asError(err, &ue) || ue.Temporary || ue.Code != 553 || ue.EnhancedCode != [3]int{5, 6, 7} {
		t.Fatalf("Send() = %v; want a permanent 553 5.6.7", err)
	}
	if r := ue.Reply(); r.Code != 553 {
		t.Errorf("Reply() = %d; want 553 for a direct-mode client", r.Code)
	}
	if w := strings.Join(d.all(), ""); strings.Contains(w, "MAIL FROM") {
		t.Errorf("the client sent MAIL FROM anyway: %q", w)
	}
}

// TestSizeAndBodyParameters: SIZE= and BODY= as declared, SMTPUTF8 when
// needed, and a message the server's SIZE refuses is not sent.
func TestSizeAndBodyParameters(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	d := &recordingDialer{}
	s := newSender(t, profileFor(u), Options{Dialer: d})
	msg := &Message{From: "a@example.com", To: []string{"jörg@example.com"}, Body: strings.NewReader(testBody), Size: int64(len(testBody)), UTF8: true, BodyType: "8BITMIME"}
	if _, err := s.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	writes := strings.Join(d.all(), "")
	if !strings.Contains(writes, fmt.Sprintf("MAIL FROM:<a@example.com> SIZE=%d BODY=8BITMIME SMTPUTF8\r\n", len(testBody))) {
		t.Errorf("MAIL line wrong in %q", clip(writes))
	}
	msg = &Message{From: "a@example.com", To: []string{"b@example.com"}, Body: strings.NewReader(testBody), Size: 64 << 20}
	_, err := s.Send(context.Background(), msg)
	var ue *Error
	if !asError(err, &ue) || ue.Temporary || ue.Code != 552 {
		t.Fatalf("Send() of 64 MiB to a 32 MiB server = %v; want a permanent 552", err)
	}
}

var smtpErr550 = smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}

func asError(err error, target **Error) bool { return errors.As(err, target) }
