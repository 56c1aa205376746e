package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
)

// fuzzSeeds are real client dialogues, good and hostile; the same inputs
// are committed under testdata/fuzz/FuzzSession.
var fuzzSeeds = []string{
	// A client from a trusted network, routed by its sender.
	"EHLO app.example\r\nMAIL FROM:<daily@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: report\r\n\r\nAll good.\r\n.\r\nQUIT\r\n",
	// A logged-in user, PLAIN and LOGIN.
	"EHLO scada\r\nAUTH PLAIN AGFwcABhcHAtcHc=\r\nMAIL FROM:<alarms@plant.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: pump 3\r\n\r\nPump 3 stopped.\r\n.\r\nQUIT\r\n",
	"EHLO scada\r\nAUTH LOGIN\r\nYXBw\r\nYXBwLXB3\r\nMAIL FROM:<alarms@plant.example.com> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<ops@example.com>\r\nRCPT TO:<oncall@example.com>\r\nDATA\r\nSubject: x\r\n\r\n..dot-stuffed\r\n.\r\n",
	// A wrong password, then trying anyway; a user spoofing a sender.
	"EHLO x\r\nAUTH PLAIN AGFwcAB3cm9uZw==\r\nMAIL FROM:<alarms@plant.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nx\r\n.\r\n",
	"EHLO x\r\nAUTH PLAIN AGFwcABhcHAtcHc=\r\nMAIL FROM:<ceo@example.com>\r\nMAIL FROM:<\"ceo@example.com\"@plant.example.com>\r\nRCPT TO:<ops@example.com>\r\n",
	// Smuggling in DATA and BDAT.
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: s\r\n\r\nx\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nevil\r\r.\r\r\nmore\r\n.\r\n",
	// go-smtp does not see <CRLF>.<CRLF> right after a bare CR: this DATA
	// does not end, and times out.
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: s\r\n\r\nx\r\r\n.\r\nNOOP\r\n",
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nBDAT 40 LAST\r\nSubject: b\r\n\r\nx\r\n.\r\nMAIL FROM:<e@x.example>\r\n",
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nBDAT 10\r\n0123456789BDAT 5 LAST\r\nabcde",
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nBDAT 500 LAST\r\ncut short",
	// Limits: size, header, recipients, line length.
	"EHLO x\r\nMAIL FROM:<a@reports.example.com> SIZE=10\r\nRCPT TO:<ops@example.com>\r\nDATA\r\n" + strings.Repeat("0123456789abcdef\r\n", 300) + ".\r\n",
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\n" + strings.Repeat("X-H: "+strings.Repeat("h", 60)+"\r\n", 20) + "\r\nbody\r\n.\r\n",
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nRCPT TO:<d@example.com>\r\n",
	"NOOP " + strings.Repeat("x", 2100) + "\r\n",
	// Hostile addresses and commands.
	"EHLO x\r\nMAIL FROM:<a\x00b@reports.example.com>\r\nMAIL FROM:<\xff@reports.example.com> SMTPUTF8\r\nMAIL FROM:<\"x> RET=FULL\"@reports.example.com>\r\nMAIL FROM:<pelé@reports.example.com>\r\n",
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<\"x> NOTIFY=SUCCESS\"@example.com>\r\nRCPT TO:<@hop:b@example.com>\r\nRCPT TO:<>\r\nRSET\r\nMAIL FROM:<>\r\n",
	"FROB\r\nXYZZY plugh\r\n\r\nN\x00OP\r\nNOOP\rRSET\r\nVRFY root\r\nEXPN x\r\nHELP\r\n",
	"EHLO x\r\nSTARTTLS\r\nAUTH PLAIN !!!\r\nAUTH LOGIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN =\r\n",
	"MAIL FROM:<a@reports.example.com>\r\nEHLO x\r\nRCPT TO:<b@example.com>\r\nDATA\r\nMAIL FROM:<a@reports.example.com>\r\nMAIL FROM:<b@reports.example.com>\r\nDATA now\r\n",
	strings.Repeat("NOOP\r\n", 200),
	// A BDAT message abandoned by RSET, then another by DATA. (Another by
	// BDAT trips go-smtp's own race on Conn.dataResult: see bdat.go.)
	"EHLO x\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nBDAT 5\r\nabcdeRSET\r\nMAIL FROM:<a@reports.example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nxyz\r\n.\r\n",
}

const fuzzConfig = `
[server]
data_dir = %q
allow_unauthenticated = ["127.0.0.0/8"]
max_recipients = 3
max_message_bytes = 4096
max_header_bytes = 1024
read_timeout = "5s"
tls_cert_file = %q
tls_key_file = %q

[[users]]
name = "app"
password_hash = %q
profile = "user"
allowed_senders = ["*@plant.example.com"]

[[routes]]
sender = "*@reports.example.com"
profile = "reports"

[[profiles]]
name = "user"
hostname = "127.0.0.1"
port = %d
delivery = "direct"

[[profiles]]
name = "reports"
hostname = "127.0.0.1"
port = %d
delivery = "direct"
`

// FuzzSession drives a real relay server on 127.0.0.1 with fuzzed client
// bytes, then the end of the client's side, and checks: the session ends
// (no hang); every reply is well formed; a message reaches the user's
// profile only after a 235 and from an allowed sender, and the route's
// profile only from the route's senders, and only when the client was
// told 250 with the message's id; nothing any upstream receives has a
// bare line ending; relay's code does not panic (go-smtp recovers
// panics into a 421 and logs them).
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	user := testpeer.StartUpstream(f, testpeer.UpstreamOptions{})
	reports := testpeer.StartUpstream(f, testpeer.UpstreamOptions{})
	clock := newFakeClock() // AUTH failures are throttled without waiting
	opts := clock.options()
	opts.Limits = Limits{SessionTimeout: 10 * time.Second, DataTimeout: 5 * time.Second}
	// With a certificate: a STARTTLS in the input is relay's to answer
	// (starttls.go), and its handshake then fails on what follows.
	_, certFile, keyFile := testpeer.TestPKI(f).Files(f)
	h := startHarness(f, fmt.Sprintf(fuzzConfig, f.TempDir(), certFile, keyFile, fuzzHash(f), user.Port, reports.Port), opts)
	plant, _ := config.ParsePattern("*@plant.example.com")
	route, _ := config.ParsePattern("*@reports.example.com")

	f.Fuzz(func(t *testing.T, in []byte) {
		nUser, nReports := len(user.Messages()), len(reports.Messages())
		logStart := len(h.logs.String())
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			conn.Write(in)
			conn.(*net.TCPConn).CloseWrite()
		}()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		out, err := io.ReadAll(conn)
		<-wrote
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the session did not end within 30 s of the client's end; it said %q", out)
		} else if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read: %v", err)
		}

		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("the output does not end with CRLF: %q", out)
		}
		var reply []string
		authenticated := false
		for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
			if len(out) == 0 {
				break
			}
			reply = append(reply, line)
			if len(line) > 3 && line[3] == '-' {
				continue
			}
			if bad := malformedReply(reply); bad != "" {
				t.Fatalf("malformed reply %q: %s", reply, bad)
			}
			if strings.HasPrefix(line, "235 ") {
				authenticated = true
			}
			reply = nil
		}
		if reply != nil {
			t.Fatalf("the server ended in the middle of a reply: %q", reply)
		}
		// go-smtp recovers panics and logs them with their stack. One is
		// its own: its BDAT goroutine calls Conn.Session().Data after
		// Close may have set the session to nil. Any panic in relay's
		// code has relay's frames in the stack.
		for _, line := range strings.Split(h.logs.String()[logStart:], "\n") {
			if strings.Contains(line, "panic serving") && strings.Contains(line, "relaymail/relay/relay.") {
				t.Fatalf("relay panicked:\n%s", strings.ReplaceAll(line, `\n`, "\n"))
			}
		}

		// Every message an upstream accepted was answered 250 with its id.
		told := map[string]bool{}
		for _, m := range replyID.FindAllStringSubmatch(string(out), -1) {
			told[m[1]] = true
		}
		for _, m := range append(user.Messages()[nUser:], reports.Messages()[nReports:]...) {
			id := receivedID.FindStringSubmatch(string(m.Data))
			if id == nil || !told[id[1]] {
				t.Fatalf("an upstream accepted a message the client was not told was accepted: %q", m.Data)
			}
		}
		for _, m := range user.Messages()[nUser:] {
			if !authenticated || !plant.Match(m.From) {
				t.Fatalf("the user's profile got a message from %q (logged in: %v)", m.From, authenticated)
			}
			checkFuzzMessage(t, m)
		}
		for _, m := range reports.Messages()[nReports:] {
			if !route.Match(m.From) {
				t.Fatalf("the route's profile got a message from %q", m.From)
			}
			checkFuzzMessage(t, m)
		}
	})
}

var (
	replyID    = regexp.MustCompile(`(?m)^250 [0-9.]+ .* id=([0-9A-Z]+)\r?$`)
	receivedID = regexp.MustCompile(`^Received: [^;]* id ([0-9A-Z]+)`)
)

func checkFuzzMessage(t *testing.T, m testpeer.Message) {
	t.Helper()
	for _, addr := range append([]string{m.From}, m.To...) {
		if err := checkAddress(addr, true, true); err != nil {
			t.Fatalf("an upstream got the envelope address %q: %v", addr, err)
		}
	}
	if at := bareLineEnding(string(m.Data)); at >= 0 {
		t.Fatalf("an upstream got a bare line ending at %d: %q", at, m.Data)
	}
}

func fuzzHash(f *testing.F) string {
	h, err := bcrypt.GenerateFromPassword([]byte("app-pw"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	return string(h)
}
