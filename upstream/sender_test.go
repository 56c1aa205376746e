package upstream

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
)

const testBody = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"

// profileFor makes a profile that points at u.
func profileFor(u *testpeer.Upstream, mods ...func(*config.Profile)) *config.Profile {
	p := &config.Profile{
		Name:         "test",
		Kind:         config.KindSMTP,
		Hostname:     u.Host,
		Port:         u.Port,
		SMTPTimeout:  config.Duration(5 * time.Second),
		SSLProtocols: "TLSv1.2,TLSv1.3",
		TLSVersions:  []uint16{tls.VersionTLS12, tls.VersionTLS13},
		HELOName:     "relay.example.net",
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func newSender(t *testing.T, p *config.Profile, opts Options) *Sender {
	t.Helper()
	if opts.RootCAs == nil {
		opts.RootCAs = testpeer.TestPKI(t).CAPool
	}
	s, err := New(p, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func message(to ...string) *Message {
	return &Message{From: "a@example.com", To: to, Body: strings.NewReader(testBody)}
}

func withAuth(user, pass string) func(*config.Profile) {
	return func(p *config.Profile) { p.Username, p.Password = user, pass }
}

func TestSendSecurityAndAuth(t *testing.T) {
	users := map[string]string{"relay@example.com": "s3cret"}
	tests := []struct {
		name     string
		upstream testpeer.UpstreamOptions
		profile  func(*config.Profile)
		wantUser string
		wantTLS  bool
		wantMech string
	}{
		{"plain without auth", testpeer.UpstreamOptions{}, func(*config.Profile) {}, "", false, ""},
		{"starttls plain auth", testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: users},
			func(p *config.Profile) { p.UseSTARTTLS = true; withAuth("relay@example.com", "s3cret")(p) }, "relay@example.com", true, "PLAIN"},
		{"implicit tls login only", testpeer.UpstreamOptions{TLS: testpeer.TLSImplicit, Users: users, Mechanisms: []string{"LOGIN"}},
			func(p *config.Profile) { p.UseSSL = true; withAuth("relay@example.com", "s3cret")(p) }, "relay@example.com", true, "LOGIN"},
		{"office 365 refuses plain with 504", testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: users, RefusePlain: true},
			func(p *config.Profile) { p.UseSTARTTLS = true; withAuth("relay@example.com", "s3cret")(p) }, "relay@example.com", true, "LOGIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testpeer.StartUpstream(t, tt.upstream)
			s := newSender(t, profileFor(u, tt.profile), Options{})
			res, err := s.Send(context.Background(), message("b@example.com"))
			if err != nil {
				t.Fatalf("Send() = %v; want success", err)
			}
			if res.Accepted() != 1 {
				t.Fatalf("Send() accepted %d recipients; want 1 (%v)", res.Accepted(), res.Rcpts)
			}
			msgs := u.Messages()
			if len(msgs) != 1 {
				t.Fatalf("upstream got %d messages; want 1", len(msgs))
			}
			m := msgs[0]
			if m.User != tt.wantUser || m.TLS != tt.wantTLS || string(m.Data) != testBody {
				t.Errorf("upstream got user %q tls %v data %q; want %q %v %q", m.User, m.TLS, m.Data, tt.wantUser, tt.wantTLS, testBody)
			}
			if tt.wantMech != "" && u.Logins(tt.wantMech) != 1 {
				t.Errorf("logins with %s = %d; want 1", tt.wantMech, u.Logins(tt.wantMech))
			}
		})
	}
}

// TestHELONameBeforeAndAfterSTARTTLS: Google's relay refuses "localhost";
// helo_name must be used on both sides of STARTTLS.
func TestHELONameBeforeAndAfterSTARTTLS(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS})
	s := newSender(t, profileFor(u, func(p *config.Profile) { p.UseSTARTTLS = true }), Options{})
	if _, err := s.Send(context.Background(), message("b@example.com")); err != nil {
		t.Fatal(err)
	}
	helos := u.Helos()
	if len(helos) != 2 || helos[0] != "relay.example.net" || helos[1] != "relay.example.net" {
		t.Fatalf("EHLO names = %q; want relay.example.net before and after STARTTLS", helos)
	}
}

func TestDefaultHELONameIsNeverLocalhost(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{})
	s := newSender(t, profileFor(u, func(p *config.Profile) { p.HELOName = "" }), Options{})
	if _, err := s.Send(context.Background(), message("b@example.com")); err != nil {
		t.Fatal(err)
	}
	h := u.Helos()[0]
	if strings.EqualFold(h, "localhost") || (!strings.Contains(h, ".") && !strings.HasPrefix(h, "[")) {
		t.Fatalf("EHLO name = %q; want an FQDN or an address literal", h)
	}
}

func TestFailureClasses(t *testing.T) {
	refuse := func(code int, ec smtp.EnhancedCode, msg string) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
	}
	users := map[string]string{"relay@example.com": "s3cret"}
	tests := []struct {
		name      string
		upstream  testpeer.UpstreamOptions
		profile   func(*config.Profile)
		wantStep  string
		wantTemp  bool
		wantCode  int
		wantReply int // what a direct-mode client is told
		wantText  string
	}{
		{"mail 451", testpeer.UpstreamOptions{OnMail: func(string) error { return refuse(451, smtp.EnhancedCode{4, 7, 1}, "greylisted") }},
			nil, StepMail, true, 451, 451, "greylisted"},
		{"mail 550", testpeer.UpstreamOptions{OnMail: func(string) error { return refuse(550, smtp.EnhancedCode{5, 7, 60}, "SendAsDenied") }},
			nil, StepMail, false, 550, 550, "SendAsDenied"},
		{"data 452", testpeer.UpstreamOptions{OnData: func(testpeer.Message) error { return refuse(452, smtp.EnhancedCode{4, 3, 1}, "mailbox full") }},
			nil, StepData, true, 452, 452, "mailbox full"},
		{"data 554", testpeer.UpstreamOptions{OnData: func(testpeer.Message) error { return refuse(554, smtp.EnhancedCode{5, 6, 0}, "content rejected") }},
			nil, StepData, false, 554, 554, "content rejected"},
		{"wrong password", testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: users},
			func(p *config.Profile) { p.UseSTARTTLS = true; withAuth("relay@example.com", "wrong")(p) }, StepAuth, true, 535, 454, "535"},
		{"auth not offered in the clear", testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS},
			withAuth("relay@example.com", "s3cret"), StepAuth, true, 0, 454, "STARTTLS"},
		{"starttls not offered", testpeer.UpstreamOptions{},
			func(p *config.Profile) { p.UseSTARTTLS = true }, StepSTARTTLS, true, 0, 451, "does not offer STARTTLS"},
		{"tls version mismatch", testpeer.UpstreamOptions{TLS: testpeer.TLSImplicit, MaxTLS: tls.VersionTLS12},
			func(p *config.Profile) { p.UseSSL = true; p.TLSVersions = []uint16{tls.VersionTLS13} }, StepTLS, true, 0, 451, "TLSv1.3"},
		{"untrusted certificate", testpeer.UpstreamOptions{TLS: testpeer.TLSImplicit},
			func(p *config.Profile) { p.UseSSL = true; p.Hostname = "localhost.invalid" }, StepConnect, true, 0, 451, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testpeer.StartUpstream(t, tt.upstream)
			var mods []func(*config.Profile)
			if tt.profile != nil {
				mods = append(mods, tt.profile)
			}
			s := newSender(t, profileFor(u, mods...), Options{})
			_, err := s.Send(context.Background(), message("b@example.com"))
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("Send() = %v; want *upstream.Error", err)
			}
			if tt.name == "untrusted certificate" {
				// No such host: the failure is at connect or TLS, and temporary.
				if !ue.Temporary {
					t.Fatalf("Send() = %v; want temporary", err)
				}
				return
			}
			if ue.Step != tt.wantStep || ue.Temporary != tt.wantTemp || ue.Code != tt.wantCode {
				t.Fatalf("Send() = %v (step %q temporary %v code %d); want step %q temporary %v code %d",
					err, ue.Step, ue.Temporary, ue.Code, tt.wantStep, tt.wantTemp, tt.wantCode)
			}
			if !strings.Contains(ue.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", ue.Error(), tt.wantText)
			}
			if r := ue.Reply(); r.Code != tt.wantReply {
				t.Errorf("Reply() = %d %v %q; want code %d", r.Code, r.EnhancedCode, r.Message, tt.wantReply)
			}
			if len(u.Messages()) != 0 {
				t.Errorf("upstream stored a message despite the failure")
			}
		})
	}
}

func TestReplyKeepsUpstreamCodes(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnData: func(testpeer.Message) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 708}, Message: "Service unavailable. Access denied"}
	}})
	s := newSender(t, profileFor(u), Options{})
	_, err := s.Send(context.Background(), message("b@example.com"))
	var ue *Error
	if !errors.As(err, &ue) {
		t.Fatalf("Send() = %v", err)
	}
	r := ue.Reply()
	if r.Code != 550 || r.EnhancedCode != (smtp.EnhancedCode{5, 7, 708}) || !strings.Contains(r.Message, "Access denied") {
		t.Fatalf("Reply() = %d %v %q; want the upstream's 550 5.7.708", r.Code, r.EnhancedCode, r.Message)
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	p := &config.Profile{Name: "down", Kind: config.KindSMTP, Hostname: "127.0.0.1", Port: addr.Port,
		SMTPTimeout: config.Duration(2 * time.Second), TLSVersions: []uint16{tls.VersionTLS12}}
	s := newSender(t, p, Options{})
	_, err = s.Send(context.Background(), message("b@example.com"))
	var ue *Error
	if !errors.As(err, &ue) || ue.Step != StepConnect || !ue.Temporary {
		t.Fatalf("Send() = %v; want a temporary connect error", err)
	}
	if r := ue.Reply(); r.Code != 451 || r.EnhancedCode != (smtp.EnhancedCode{4, 4, 1}) {
		t.Fatalf("Reply() = %d %v; want 451 4.4.1", r.Code, r.EnhancedCode)
	}
}

func TestTimeout(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{GreetingDelay: 3 * time.Second})
	s := newSender(t, profileFor(u, func(p *config.Profile) { p.SMTPTimeout = config.Duration(200 * time.Millisecond) }), Options{})
	_, err := s.Send(context.Background(), message("b@example.com"))
	var ue *Error
	if !errors.As(err, &ue) || !ue.Temporary || !isTimeout(ue.Err) {
		t.Fatalf("Send() = %v; want a temporary timeout", err)
	}
	if r := ue.Reply(); r.Code != 451 || r.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
		t.Fatalf("Reply() = %d %v; want 451 4.4.2", r.Code, r.EnhancedCode)
	}
}

func TestContextCancelStopsABlockedSession(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{GreetingDelay: 3 * time.Second})
	s := newSender(t, profileFor(u), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Send(ctx, message("b@example.com"))
	var ue *Error
	if !errors.As(err, &ue) || !ue.Temporary {
		t.Fatalf("Send() = %v; want a temporary error", err)
	}
}

func TestSeveralMessagesOneConnection(t *testing.T) {
	var mu sync.Mutex
	mails := 0
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		OnMail: func(from string) error {
			mu.Lock()
			defer mu.Unlock()
			mails++
			if mails == 2 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
			}
			return nil
		},
	})
	s := newSender(t, profileFor(u), Options{})
	ctx := context.Background()
	c := dialConn(t, s)
	for i := 0; i < 4; i++ {
		_, err := c.Send(ctx, message("b@example.com"))
		if (i == 1) != (err != nil) {
			t.Fatalf("message %d: Send() = %v", i, err)
		}
		if !c.Usable() {
			t.Fatalf("message %d: connection unusable after %v", i, err)
		}
	}
	if got := len(u.Messages()); got != 3 {
		t.Fatalf("upstream got %d messages; want 3", got)
	}
	if got := u.Sessions(); got != 1 {
		t.Fatalf("upstream saw %d sessions; want 1 connection for the burst", got)
	}
}

func TestPerRecipientOutcome(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		switch to {
		case "gone@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case "full@example.com":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	}})
	s := newSender(t, profileFor(u), Options{})
	res, err := s.Send(context.Background(), message("ok@example.com", "gone@example.com", "full@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	var e1, e2 *Error
	if res.Rcpts[0] != nil || !errors.As(res.Rcpts[1], &e1) || !errors.As(res.Rcpts[2], &e2) {
		t.Fatalf("Rcpts = %v; want accepted, refused, refused", res.Rcpts)
	}
	if e1.Temporary || e1.Code != 550 || !e2.Temporary || e2.Code != 452 {
		t.Fatalf("Rcpts = %v; want 550 permanent and 452 temporary", res.Rcpts)
	}
	msgs := u.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "ok@example.com" {
		t.Fatalf("upstream got %+v; want one message to ok@example.com", msgs)
	}
}

func TestAllRecipientsRefusedSendsNoData(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
	}})
	s := newSender(t, profileFor(u), Options{})
	c := dialConn(t, s)
	res, err := c.Send(context.Background(), message("x@example.com"))
	if err != nil || res.Accepted() != 0 {
		t.Fatalf("Send() = %+v, %v; want every recipient refused", res, err)
	}
	if !c.Usable() || len(u.Messages()) != 0 {
		t.Fatalf("usable %v, messages %d; want a usable connection and no message", c.Usable(), len(u.Messages()))
	}
}

// TestTraceRedactsSecrets: debug logs the dialogue, never the password nor
// the body.
func TestTraceRedactsSecrets(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": "pw-very-secret"}, Mechanisms: []string{"LOGIN", "PLAIN"}})
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts := testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS, Users: map[string]string{"relay@example.com": "pw-very-secret"}, Mechanisms: []string{mech}}
			u := testpeer.StartUpstream(t, opts)
			p := profileFor(u, func(p *config.Profile) {
				p.UseSTARTTLS = true
				p.Debug = true
				withAuth("relay@example.com", "pw-very-secret")(p)
			})
			s := newSender(t, p, Options{Logger: logger})
			if _, err := s.Send(context.Background(), message("b@example.com")); err != nil {
				t.Fatal(err)
			}
			out := logs.String()
			for _, secret := range []string{"pw-very-secret", "cHctdmVyeS1zZWNyZXQ", "AHJlbGF5QGV4YW1wbGUuY29tAHB3LXZlcnktc2VjcmV0", "hello", "Subject: hi"} {
				if strings.Contains(out, secret) {
					t.Errorf("trace contains %q:\n%s", secret, out)
				}
			}
			for _, want := range []string{"EHLO relay.example.net", "STARTTLS", "AUTH " + mech, "MAIL FROM:<a@example.com>", "message body", "250"} {
				if !strings.Contains(out, want) {
					t.Errorf("trace lacks %q:\n%s", want, out)
				}
			}
		})
	}
	_ = u
}

// TestWrongTLSMode: the two usual mix-ups of a profile's TLS settings and
// the upstream's port fail with an error that names the setting to
// change, as the admin page, relay test and the log show it. use_ssl
// against a server that greets in plain text (587, 25): the greeting
// arrives where the TLS handshake was due. No use_ssl against a server
// that waits for a handshake (465): nothing arrives until smtp_timeout
// (as from a server too slow to greet: the error says "if").
func TestWrongTLSMode(t *testing.T) {
	plain := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS})
	implicit := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSImplicit})
	short := func(p *config.Profile) { p.SMTPTimeout = config.Duration(time.Second) }
	tests := []struct {
		name    string
		profile *config.Profile
		step    string
		want    string // what the error must say
	}{
		{"use_ssl to a server in plain text", profileFor(plain, func(p *config.Profile) { p.UseSSL = true }), StepTLS, "set use_ssl = false"},
		{"plain to an implicit-TLS server", profileFor(implicit, short), StepGreeting, "set use_ssl = true"},
		{"use_starttls to an implicit-TLS server", profileFor(implicit, short, func(p *config.Profile) { p.UseSTARTTLS = true }), StepGreeting, "set use_ssl = true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newSender(t, tt.profile, Options{}).Send(context.Background(), message("b@example.com"))
			var ue *Error
			if !errors.As(err, &ue) || ue.Step != tt.step || !ue.Temporary {
				t.Fatalf("Send() = %v; want a temporary %s error", err, tt.step)
			}
			if !strings.Contains(ue.Error(), tt.want) {
				t.Errorf("error %q does not say %q", ue.Error(), tt.want)
			}
		})
	}
}

// dialTo is a Dialer that connects to addr whatever name it is asked for.
type dialTo string

func (a dialTo) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, string(a))
}

// expiredTLSServer is an implicit-TLS listener on 127.0.0.1 whose
// self-signed certificate expired yesterday; pool trusts it.
func expiredTLSServer(t *testing.T) (addr string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "expired"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for range 10 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String(), pool
}

// TestCertificateProblems: a TLS handshake that fails on the upstream's
// certificate says which profile setting to look at: tls_ca_file for a
// private CA, hostname for a name the certificate does not hold, the
// certificate or the clock for one out of its validity.
func TestCertificateProblems(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{TLS: testpeer.TLSStartTLS})
	starttls := func(p *config.Profile) { p.UseSTARTTLS = true }
	expiredAddr, expiredPool := expiredTLSServer(t)
	host, port, _ := net.SplitHostPort(expiredAddr)
	expired := profileFor(u, func(p *config.Profile) { p.UseSSL = true; p.Hostname = host; p.Port, _ = strconv.Atoi(port) })
	tests := []struct {
		name    string
		profile *config.Profile
		opts    Options
		want    string
	}{
		{"a CA relay does not know", profileFor(u, starttls), Options{RootCAs: x509.NewCertPool()}, "set tls_ca_file"},
		{"a name the certificate does not hold", profileFor(u, starttls, func(p *config.Profile) { p.Hostname = "mail.example.com" }), Options{Dialer: dialTo(u.Addr)}, "set hostname to a name the server's certificate holds"},
		{"an expired certificate", expired, Options{RootCAs: expiredPool}, "check this machine's clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newSender(t, tt.profile, tt.opts).Send(context.Background(), message("b@example.com"))
			var ue *Error
			if !errors.As(err, &ue) || ue.Step != StepTLS || !ue.Temporary {
				t.Fatalf("Send() = %v; want a temporary %s error", err, StepTLS)
			}
			if !strings.Contains(ue.Error(), tt.want) {
				t.Errorf("error %q does not say %q", ue.Error(), tt.want)
			}
		})
	}
}
