package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/internal/testpeer"
)

// startRelay runs a relay server for the configuration text on 127.0.0.1
// (startHarness) and returns its address.
func startRelay(t *testing.T, cfgText string) (string, *Server) {
	t.Helper()
	h := startHarness(t, cfgText, Options{})
	return h.addr, h.srv
}

// client is a raw SMTP client, so tests see exact reply codes.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, conn)
}

// newClient reads the greeting on conn, which the test's end closes.
func newClient(t *testing.T, conn net.Conn) *client {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect(220)
	return c
}

// reply reads one (possibly multi-line) reply: its code and its lines.
func (c *client) reply() (int, []string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (so far %q)", err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			var code int
			fmt.Sscanf(line, "%d", &code)
			return code, lines
		}
	}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

// cmd sends a command and returns the last line of the reply.
func (c *client) cmd(line string) (int, string) {
	c.t.Helper()
	c.send(line)
	code, lines := c.reply()
	return code, lines[len(lines)-1]
}

func (c *client) expect(code int) string {
	c.t.Helper()
	got, lines := c.reply()
	if got != code {
		c.t.Fatalf("reply %q; want %d", lines, code)
	}
	return lines[len(lines)-1]
}

// must sends a command and fails unless the reply has code and, if set,
// the enhanced code.
func (c *client) must(line string, code int, enhanced string) string {
	c.t.Helper()
	got, last := c.cmd(line)
	if got != code || (enhanced != "" && !strings.HasPrefix(last[4:], enhanced+" ")) {
		c.t.Fatalf("%s → %q; want %d %s", line, last, code, enhanced)
	}
	return last
}

func (c *client) ehlo() []string {
	c.t.Helper()
	c.send("EHLO client.example.com")
	code, lines := c.reply()
	if code != 250 {
		c.t.Fatalf("EHLO → %q", lines)
	}
	return lines
}

func (c *client) startTLS(pool *tls.Config) {
	c.t.Helper()
	c.must("STARTTLS", 220, "")
	tc := tls.Client(c.conn, pool)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *client) authPlain(user, pass string) (int, string) {
	c.t.Helper()
	return c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
}

// data sends DATA and the message (CRLF lines, dot-stuffed by the caller)
// and returns the final reply.
func (c *client) data(body string) (int, string) {
	c.t.Helper()
	c.must("DATA", 354, "")
	if _, err := c.conn.Write([]byte(body + ".\r\n")); err != nil {
		c.t.Fatal(err)
	}
	code, lines := c.reply()
	return code, lines[len(lines)-1]
}

const msgBody = "From: alarms@plant.example.com\r\nTo: ops@example.com\r\nSubject: pump 3\r\n\r\nPump 3 stopped.\r\n"

func hash(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// directConfig sends everything through one profile "up" that waits for
// the upstream on port (delivery = "direct").
func directConfig(t *testing.T, port int) string {
	return fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "up"
[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = %d
smtp_timeout = "2s"
delivery = "direct"
`, t.TempDir(), port)
}

func classicConfig(t *testing.T, u *testpeer.Upstream, extra string) string {
	caFile, _, _ := testpeer.TestPKI(t).Files(t)
	return fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
data_dir = %q
%s

[[users]]
name = "scada"
password_hash = %q
profile = "mailhost"
allowed_senders = ["*@plant.example.com"]

[[profiles]]
name = "mailhost"
hostname = "127.0.0.1"
port = %d
use_starttls = true
username = "relay@example.com"
password = "upstream-secret"
tls_ca_file = %q
helo_name = "relay.test.example"
delivery = "direct"
`, t.TempDir(), extra, hash(t, "scada-pw"), u.Port, caFile)
}

// TestLoggedInUserThroughSTARTTLSUpstream: the first "done when":
// a logged-in local user's message reaches a STARTTLS upstream that
// requires AUTH.
func TestLoggedInUserThroughSTARTTLSUpstream(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": "upstream-secret"}})
	addr, _ := startRelay(t, classicConfig(t, u, ""))
	c := dial(t, addr)
	caps := strings.Join(c.ehlo(), "\n")
	for _, want := range []string{"PIPELINING", "8BITMIME", "SIZE", "ENHANCEDSTATUSCODES", "SMTPUTF8", "AUTH PLAIN LOGIN"} {
		if !strings.Contains(caps, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, caps)
		}
	}
	if strings.Contains(caps, "STARTTLS") {
		t.Errorf("EHLO offers STARTTLS without a certificate:\n%s", caps)
	}
	if code, last := c.authPlain("scada", "scada-pw"); code != 235 {
		t.Fatalf("AUTH → %q", last)
	}
	c.must("MAIL FROM:<alarms@plant.example.com>", 250, "2.0.0")
	c.must("RCPT TO:<ops@example.com>", 250, "2.0.0")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	msgs := u.Messages()
	if len(msgs) != 1 {
		t.Fatalf("upstream got %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	if m.User != "relay@example.com" || !m.TLS || m.From != "alarms@plant.example.com" || m.To[0] != "ops@example.com" || m.Helo != "relay.test.example" {
		t.Errorf("upstream got %+v", m)
	}
	if !strings.HasSuffix(string(m.Data), msgBody) || !strings.HasPrefix(string(m.Data), "Received: from client.example.com ([127.0.0.1])") {
		t.Errorf("upstream data = %q; want a Received header and the body", m.Data)
	}
	if !strings.Contains(string(m.Data), "with ESMTPA id") {
		t.Errorf("Received header does not say ESMTPA: %q", m.Data)
	}
}

func TestAUTHLogin(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": "upstream-secret"}})
	addr, _ := startRelay(t, classicConfig(t, u, ""))
	c := dial(t, addr)
	c.ehlo()
	c.must("AUTH LOGIN", 334, "")
	c.must(base64.StdEncoding.EncodeToString([]byte("scada")), 334, "")
	c.must(base64.StdEncoding.EncodeToString([]byte("scada-pw")), 235, "2.0.0")
}

func TestRefusals(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": "upstream-secret"}})
	tests := []struct {
		name  string
		extra string
		steps func(c *client)
	}{
		{"wrong password", "", func(c *client) {
			if code, last := c.authPlain("scada", "wrong"); code != 535 || !strings.HasPrefix(last, "535 5.7.8") {
				t.Fatalf("AUTH → %q; want 535 5.7.8", last)
			}
		}},
		{"unknown user", "", func(c *client) {
			if code, last := c.authPlain("nobody", "scada-pw"); code != 535 || !strings.HasPrefix(last, "535 5.7.8") {
				t.Fatalf("AUTH → %q; want 535 5.7.8", last)
			}
		}},
		{"sender not allowed for user", "", func(c *client) {
			c.authPlain("scada", "scada-pw")
			last := c.must("MAIL FROM:<ceo@example.com>", 550, "5.7.1")
			if !strings.Contains(last, "not allowed") {
				t.Errorf("reply %q does not say why", last)
			}
		}},
		{"no route and no default", "", func(c *client) {
			last := c.must("MAIL FROM:<someone@elsewhere.example>", 550, "5.7.1")
			if !strings.Contains(last, "no route") {
				t.Errorf("reply %q does not name the reason", last)
			}
		}},
		{"not trusted and not logged in", `allow_unauthenticated = []`, func(c *client) {
			c.must("MAIL FROM:<alarms@plant.example.com>", 530, "5.7.0")
		}},
		{"too many recipients", "max_recipients = 2", func(c *client) {
			c.authPlain("scada", "scada-pw")
			c.must("MAIL FROM:<alarms@plant.example.com>", 250, "")
			c.must("RCPT TO:<a@example.com>", 250, "")
			c.must("RCPT TO:<b@example.com>", 250, "")
			c.must("RCPT TO:<c@example.com>", 452, "4.5.3")
		}},
		{"message too big", "max_message_bytes = 100", func(c *client) {
			c.authPlain("scada", "scada-pw")
			c.must("MAIL FROM:<alarms@plant.example.com> SIZE=500", 552, "5.3.4")
			c.must("MAIL FROM:<alarms@plant.example.com>", 250, "")
			c.must("RCPT TO:<a@example.com>", 250, "")
			code, last := c.data(strings.Repeat("x", 200) + "\r\n")
			if code != 552 || !strings.HasPrefix(last, "552 5.3.4") {
				t.Fatalf("DATA → %q; want 552 5.3.4", last)
			}
		}},
		{"data before rcpt", "", func(c *client) {
			c.must("DATA", 502, "5.5.1")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := startRelay(t, classicConfig(t, u, tt.extra))
			c := dial(t, addr)
			c.ehlo()
			tt.steps(c)
			// The session goes on after a refusal.
			c.must("NOOP", 250, "")
		})
	}
	if n := len(u.Messages()); n != 0 {
		t.Fatalf("upstream got %d messages from refused sessions", n)
	}
}

func TestAuthOnlyOverTLSOrLoopback(t *testing.T) {
	srv := &Server{}
	remote := &session{srv: srv, remote: netip.MustParseAddr("192.0.2.10"), logger: slog.New(slog.DiscardHandler)}
	if m := remote.AuthMechanisms(); m != nil {
		t.Errorf("plain remote session offers %v; want no AUTH", m)
	}
	if _, err := remote.Auth("PLAIN"); err == nil {
		t.Errorf("plain remote session accepted AUTH PLAIN")
	} else if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 538 {
		t.Errorf("Auth() = %v; want 538 5.7.11", err)
	}
	remote.tls = true
	if m := remote.AuthMechanisms(); len(m) != 2 {
		t.Errorf("TLS session offers %v; want PLAIN LOGIN", m)
	}
	local := &session{srv: srv, remote: netip.MustParseAddr("::1")}
	if m := local.AuthMechanisms(); len(m) != 2 {
		t.Errorf("loopback session offers %v; want PLAIN LOGIN", m)
	}
}

func TestRoutingRules(t *testing.T) {
	a := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	b := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	users := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	cfg := fmt.Sprintf(`
[server]
data_dir = %q
default_profile = "b"

[[users]]
name = "reports"
password_hash = %q
profile = "users"

[[routes]]
sender = "*@reports.example.com"
profile = "a"

[[routes]]
sender = "*@*.example.com"
profile = "b"

[[profiles]]
name = "a"
hostname = "127.0.0.1"
port = %d
delivery = "direct"

[[profiles]]
name = "b"
hostname = "127.0.0.1"
port = %d
delivery = "direct"

[[profiles]]
name = "users"
hostname = "127.0.0.1"
port = %d
delivery = "direct"
`, t.TempDir(), hash(t, "pw"), a.Port, b.Port, users.Port)
	addr, _ := startRelay(t, cfg)
	send := func(login, from string) {
		c := dial(t, addr)
		c.ehlo()
		if login != "" {
			if code, last := c.authPlain(login, "pw"); code != 235 {
				t.Fatalf("AUTH → %q", last)
			}
		}
		c.must("MAIL FROM:<"+from+">", 250, "")
		c.must("RCPT TO:<x@example.com>", 250, "")
		if code, last := c.data(msgBody); code != 250 {
			t.Fatalf("DATA → %q", last)
		}
	}
	send("", "daily@reports.example.com")        // first route
	send("", "x@plant.example.com")              // second route
	send("", "x@other.org")                      // default profile
	send("reports", "daily@reports.example.com") // a login beats routes
	tests := []struct {
		name string
		u    *testpeer.Upstream
		want []string
	}{
		{"a", a, []string{"daily@reports.example.com"}},
		{"b", b, []string{"x@plant.example.com", "x@other.org"}},
		{"users", users, []string{"daily@reports.example.com"}},
	}
	for _, tt := range tests {
		var got []string
		for _, m := range tt.u.Messages() {
			got = append(got, m.From)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("profile %s got senders %q; want %q", tt.name, got, tt.want)
		}
	}
}

// TestDirectModePassesUpstreamReplies: in direct mode the client sees the
// upstream's own codes, per recipient and for DATA.
func TestDirectModePassesUpstreamReplies(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		OnRcpt: func(to string) error {
			if to == "gone@example.com" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
			}
			return nil
		},
		OnData: func(m testpeer.Message) error {
			if strings.Contains(string(m.Data), "REJECT-ME") {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Content refused"}
			}
			return nil
		},
	})
	addr, _ := startRelay(t, directConfig(t, u.Port))
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<gone@example.com>", 550, "5.1.1")
	c.must("RCPT TO:<ok@example.com>", 250, "")
	if code, last := c.data("Subject: REJECT-ME\r\n\r\nx\r\n"); code != 554 || !strings.HasPrefix(last, "554 5.7.1 Content refused") {
		t.Fatalf("DATA → %q; want the upstream's 554 5.7.1", last)
	}
	// The same session delivers the next message.
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<ok@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	if msgs := u.Messages(); len(msgs) != 1 || msgs[0].To[0] != "ok@example.com" {
		t.Fatalf("upstream got %+v; want one message to ok@example.com", msgs)
	}
}

func TestUpstreamDownIsTemporary(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr, _ := startRelay(t, directConfig(t, port))
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 451, "4.4.1")
}

func TestSTARTTLSInbound(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	pki := testpeer.TestPKI(t)
	_, certFile, keyFile := pki.Files(t)
	cfg := fmt.Sprintf(`
[server]
data_dir = %q
tls_cert_file = %q
tls_key_file = %q
allow_unauthenticated = []
[[users]]
name = "printer"
password_hash = %q
profile = "up"
[[profiles]]
name = "up"
hostname = "127.0.0.1"
port = %d
delivery = "direct"
`, t.TempDir(), certFile, keyFile, hash(t, "pw"), u.Port)
	addr, _ := startRelay(t, cfg)
	c := dial(t, addr)
	if caps := strings.Join(c.ehlo(), "\n"); !strings.Contains(caps, "STARTTLS") {
		t.Fatalf("EHLO lacks STARTTLS:\n%s", caps)
	}
	c.startTLS(&tls.Config{RootCAs: pki.CAPool, ServerName: "localhost"})
	c.ehlo()
	if code, last := c.authPlain("printer", "pw"); code != 235 {
		t.Fatalf("AUTH over TLS → %q", last)
	}
	c.must("MAIL FROM:<p@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	if m := u.Messages(); len(m) != 1 || !strings.Contains(string(m[0].Data), "with ESMTPSA") {
		t.Fatalf("upstream got %d messages (%+v); want one received with ESMTPSA", len(m), m)
	}
}

// TestBareLineEndingsAreNormalised: bare LF and CR become CRLF, and a
// <LF>.<LF> inside DATA does not end the message (SMTP smuggling).
func TestBareLineEndingsAreNormalised(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	addr, _ := startRelay(t, directConfig(t, u.Port))
	c := dial(t, addr)
	c.ehlo()
	c.must("MAIL FROM:<a@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	smuggled := "Subject: one\n\nfirst\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nbare\rcr\r\n"
	if code, last := c.data(smuggled); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	msgs := u.Messages()
	if len(msgs) != 1 {
		t.Fatalf("upstream got %d messages; want exactly 1", len(msgs))
	}
	data := string(msgs[0].Data)
	body := data[strings.Index(data, "Subject: one"):]
	want := "Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nbare\r\ncr\r\n"
	if body != want {
		t.Fatalf("upstream body = %q; want %q", body, want)
	}
	if strings.Contains(strings.ReplaceAll(data, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(data, "\r\n", ""), "\r") {
		t.Fatalf("upstream data has a bare line ending: %q", data)
	}
}

func TestEmbeddedDefaultMaildir(t *testing.T) {
	cfg, maildir := maildirConfig(t, "")
	addr, _ := startRelay(t, cfg)
	c := dial(t, addr)
	c.send("HELO old-printer")
	c.expect(250)
	c.must("MAIL FROM:<printer@example.com>", 250, "")
	c.must("RCPT TO:<b@example.com>", 250, "")
	if code, last := c.data(msgBody); code != 250 {
		t.Fatalf("DATA → %q", last)
	}
	files, err := os.ReadDir(filepath.Join(maildir, "new"))
	if err != nil || len(files) != 1 {
		t.Fatalf("maildir/new holds %v, %v; want one message", files, err)
	}
	data, _ := os.ReadFile(filepath.Join(maildir, "new", files[0].Name()))
	if !strings.HasPrefix(string(data), "Return-Path: <printer@example.com>\nReceived: from old-printer") ||
		!strings.HasSuffix(string(data), strings.ReplaceAll(msgBody, "\r\n", "\n")) {
		t.Fatalf("maildir message = %q", data)
	}
}

func TestConnectionLimitPerClient(t *testing.T) {
	cfg, _ := maildirConfig(t, "max_connections_per_client = 2")
	addr, _ := startRelay(t, cfg)
	dial(t, addr)
	second := dial(t, addr)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0") {
		t.Fatalf("third connection got %q; want 421 4.7.0", line)
	}
	// Closing one makes room again.
	second.cmd("QUIT")
	second.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if strings.HasPrefix(line, "220") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a client left: %q", line)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShutdownEndsIdleConnectionsAndLetsTransactionsFinish: on shutdown an
// idle client gets 421 at once, and a client in the middle of a
// transaction finishes it, gets its 250 and then 421.
func TestShutdownEndsIdleConnectionsAndLetsTransactionsFinish(t *testing.T) {
	cfg, _ := maildirConfig(t, "")
	addr, srv := startRelay(t, cfg)
	idle := dial(t, addr)
	idle.ehlo()
	busy := dial(t, addr)
	busy.ehlo()
	busy.must("MAIL FROM:<a@example.com>", 250, "")
	busy.must("RCPT TO:<b@example.com>", 250, "")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	if code, last := idle.reply(); code != 421 {
		t.Fatalf("idle client got %q; want 421", last)
	}
	if code, last := busy.data(msgBody); code != 250 {
		t.Fatalf("DATA during shutdown → %q; want 250", last)
	}
	if code, last := busy.reply(); code != 421 {
		t.Fatalf("after its transaction the client got %q; want 421", last)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

// TestServeAfterStop: a stop that comes before Serve or ServeTLS has
// started (a SIGTERM right after start) stops it too: Serve returns at
// once and closes its listener. go-smtp's own Serve, called after its
// Shutdown, takes the listener and accepts on it for ever, so relay serve
// never returned.
func TestServeAfterStop(t *testing.T) {
	_, certFile, keyFile := testpeer.TestPKI(t).Files(t)
	cfg, _ := maildirConfig(t, fmt.Sprintf("tls_cert_file = %q\ntls_key_file = %q", certFile, keyFile))
	for _, stop := range []string{"Shutdown", "Close"} {
		for _, serve := range []string{"Serve", "ServeTLS"} {
			t.Run(stop+"/"+serve, func(t *testing.T) {
				h := startHarness(t, cfg, Options{})
				if stop == "Shutdown" {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if err := h.srv.Shutdown(ctx); err != nil {
						t.Fatalf("Shutdown() = %v", err)
					}
				} else {
					h.srv.Close()
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				done := make(chan error, 1)
				go func() {
					if serve == "Serve" {
						done <- h.srv.Serve(ln)
					} else {
						done <- h.srv.ServeTLS(ln)
					}
				}()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s after %s = %v; want nil", serve, stop, err)
					}
				case <-time.After(10 * time.Second):
					ln.Close() // ends the Serve
					t.Fatalf("%s after %s still serves after 10 s", serve, stop)
				}
				if c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second); err == nil {
					c.Close()
					t.Errorf("%s after %s left its listener open", serve, stop)
				}
			})
		}
	}
}
