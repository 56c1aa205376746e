// Package clients drives the SMTP client programs that legacy applications
// really send with (JavaMail, Jakarta Mail, nodemailer, PHPMailer, msmtp,
// swaks, curl, Python's smtplib) against a relay running in process, and
// checks what arrives in a Maildir and at an upstream behind the queue.
// The package has only tests.
package clients

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/relay"
	"github.com/relaymail/relay/upstream"
)

// Logins of the rig's relay: each decides its profile. Clients that do not
// log in are routed by their envelope sender instead (see startRig).
const (
	maildirUser = "maildir-app"
	queueUser   = "queue-app"
	password    = "s3cret pass-word!" // a space: clients must quote or encode it
	// What the relay's queue profile logs in to the upstream with.
	upstreamUser = "relay@example.com"
	upstreamPass = "upstream-secret"
)

// destination is where a case's message goes: the profile and how to
// reach it with and without a login.
type destination struct {
	name   string // "maildir" or "queue"
	user   string // the login that routes to it
	sender string // an envelope sender that routes to it without a login
}

// loginSender is the sender of clients that log in: no route takes it
// anywhere, so without the login relay refuses it (550 5.7.1).
const loginSender = "alarms@plant.example.com"

var destinations = []destination{
	{name: "maildir", user: maildirUser, sender: "app@maildir.test"},
	{name: "queue", user: queueUser, sender: "app@queue.test"},
}

// rig is one relay, in process, with a Maildir profile and a queue
// profile that delivers to a STARTTLS upstream requiring AUTH. Its SMTP
// listener offers STARTTLS with a certificate of the test CA; its SMTPS
// listener speaks TLS from the first byte (RFC 8314) with the same one.
type rig struct {
	addr      string // plain listener, STARTTLS offered
	smtpsAddr string // implicit TLS
	caFile    string // the test CA, for clients that verify the certificate
	dir       string // shared by every case: the input files, compiled senders
	in        files
	maildir   string
	up        *testpeer.Upstream
	logs      *testpeer.Buffer
}

// startRig starts the upstream and relay, wired as `relay serve` wires
// them (spool, queue runner, transports), and stops both when t ends.
func startRig(t *testing.T) *rig {
	t.Helper()
	pki := testpeer.TestPKI(t)
	caFile, certFile, keyFile := pki.Files(t)
	up := testpeer.StartUpstream(t, testpeer.UpstreamOptions{
		TLS:   testpeer.TLSStartTLS,
		Users: map[string]string{upstreamUser: upstreamPass},
	})
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	r := &rig{caFile: caFile, dir: t.TempDir(), maildir: filepath.Join(t.TempDir(), "maildir"), up: up, logs: &testpeer.Buffer{}}
	r.in = writeInputs(t, r.dir)
	cfgText := fmt.Sprintf(`
[server]
hostname = "relay.test"
data_dir = %[1]q
tls_cert_file = %[2]q
tls_key_file = %[3]q
smtps_listen = "127.0.0.1:0"

[[users]]
name = %[4]q
password_hash = %[5]q
profile = "local"

[[users]]
name = %[6]q
password_hash = %[5]q
profile = "upstream"

[[routes]]
sender = "*@maildir.test"
profile = "local"

[[routes]]
sender = "*@queue.test"
profile = "upstream"

[[profiles]]
name = "local"
kind = "maildir"
path = %[7]q

[[profiles]]
name = "upstream"
hostname = "127.0.0.1"
port = %[8]d
use_starttls = true
tls_ca_file = %[9]q
username = %[10]q
password = %[11]q
delivery = "queue"
`, dataDir, certFile, keyFile, maildirUser, hash, queueUser, r.maildir, up.Port, caFile, upstreamUser, upstreamPass)
	cfg, err := config.Parse("clients.toml", []byte(cfgText))
	if err == nil {
		err = cfg.Resolve()
	}
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sp := testpeer.OpenSpool(t, filepath.Join(dataDir, "spool"))
	srv, err := relay.NewServer(cfg, relay.Options{Logger: logger, Spool: sp, Transports: relay.Transports(upstream.Options{Logger: logger}, nil)})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smtps, err := net.Listen("tcp", cfg.Server.SMTPSListen)
	if err != nil {
		t.Fatal(err)
	}
	r.addr, r.smtpsAddr = ln.Addr().String(), smtps.Addr().String()
	go srv.Serve(ln)
	go srv.ServeTLS(smtps)
	ctx, stopQueue := context.WithCancel(context.Background())
	queueDone := make(chan struct{})
	go func() { srv.RunQueue(ctx); close(queueDone) }()
	t.Cleanup(func() {
		srv.Close()
		stopQueue()
		<-queueDone
		if t.Failed() {
			t.Logf("relay logs:\n%s", r.logs)
		}
	})
	return r
}

// arrived waits, at most 90 s, for the message whose Subject is subject
// to arrive at d, and returns it.
func (r *rig) arrived(t *testing.T, d destination, subject string) []byte {
	t.Helper()
	needle := []byte("Subject: " + subject)
	var data []byte
	testpeer.WaitFor(t, fmt.Sprintf("a message with %q at %s", needle, d.name), 90*time.Second, func() bool {
		if d.name == "maildir" {
			data = r.fromMaildir(t, needle)
			return data != nil
		}
		for _, m := range r.up.Messages() {
			if containsHeader(m.Data, needle) {
				data = m.Data
				return true
			}
		}
		return false
	})
	return data
}

// fromMaildir returns the message in the Maildir's new/ that holds needle
// in its header, or nil. It reads only the start of each file until one
// matches.
func (r *rig) fromMaildir(t *testing.T, needle []byte) []byte {
	t.Helper()
	dir := filepath.Join(r.maildir, "new")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	head := make([]byte, 8<<10)
	for _, e := range entries {
		name := filepath.Join(dir, e.Name())
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := io.ReadFull(f, head)
		f.Close()
		if !containsHeader(head[:n], needle) {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	return nil
}

// containsHeader reports whether the header section of msg holds needle
// at the start of a line.
func containsHeader(msg, needle []byte) bool {
	head := string(msg)
	if i := strings.Index(head, "\n\r\n"); i >= 0 {
		head = head[:i]
	}
	if i := strings.Index(head, "\n\n"); i >= 0 {
		head = head[:i]
	}
	return strings.HasPrefix(head, string(needle)) || strings.Contains(head, "\n"+string(needle))
}
