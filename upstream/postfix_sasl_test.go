package upstream

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
)

const (
	postfixUser     = "relay@example.com"
	postfixPassword = "Right-pw 4 Postfix"
)

// startPostfixSASL starts smtp-sink and, relaying to it, a private Postfix
// that offers only mech after STARTTLS and knows postfixUser.
func startPostfixSASL(t *testing.T, mech string) (*testpeer.Postfix, *testpeer.Sink) {
	t.Helper()
	sink := testpeer.StartSink(t)
	pf := testpeer.StartPostfixSASL(t, sink.Addr, testpeer.PostfixSASL{
		Users:      map[string]string{postfixUser: postfixPassword},
		Mechanisms: []string{mech},
	})
	return pf, sink
}

// postfixSASLProfile points a profile at Postfix with STARTTLS (verified
// against the test CA) and password.
func postfixSASLProfile(t *testing.T, addr, password string) *config.Profile {
	p := sinkProfile(t, addr)
	p.UseSTARTTLS = true
	withAuth(postfixUser, password)(p)
	return p
}

// postfixSession is what Postfix logged about the one session that tried
// AUTH, once it has ended: its lines from "connect from" to "disconnect
// from", and the commands the disconnect line counts ("ehlo=2
// starttls=1 auth=0/1 quit=1").
func postfixSession(t *testing.T, pf *testpeer.Postfix) (lines []string, commands []string) {
	t.Helper()
	var log string
	testpeer.WaitFor(t, "Postfix's disconnect line for the AUTH session", 10*time.Second, func() bool {
		log = pf.Log()
		return strings.Contains(log, " auth=")
	})
	sessions := map[string][]string{} // smtpd process → its current session
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, "postfix/smtpd[")
		if i < 0 {
			continue
		}
		proc, msg, _ := strings.Cut(line[i:], ": ")
		if strings.HasPrefix(msg, "connect from ") {
			sessions[proc] = nil
		}
		sessions[proc] = append(sessions[proc], line)
		if strings.HasPrefix(msg, "disconnect from ") && strings.Contains(msg, " auth=") {
			for _, f := range strings.Fields(msg)[3:] {
				if !strings.HasPrefix(f, "commands=") {
					commands = append(commands, f)
				}
			}
			return sessions[proc], commands
		}
	}
	t.Fatalf("no AUTH session in Postfix's log:\n%s", log)
	return nil, nil
}

// TestPostfixWrongPassword: Postfix (Cyrus SASL) answers a wrong password
// with 535 5.7.8; relay's client reports that reply, with Postfix's
// text, sends nothing after it but QUIT (it does send QUIT), and Postfix logs nothing about
// the client but the failed login itself: no "non-SMTP command" and no
// "I can break rules, too" for a "*" (RFC 4954 §4 allows "*" only as the
// answer to a 334), no other command, no other warning.
func TestPostfixWrongPassword(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			pf, _ := startPostfixSASL(t, mech)
			var trace bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&trace, nil))
			s := newSender(t, postfixSASLProfile(t, pf.Addr, "wrong-"+postfixPassword), Options{Logger: logger, Debug: true})
			_, err := s.Send(context.Background(), message("b@example.com"))
			var ue *Error
			if !asError(err, &ue) || ue.Step != StepAuth || ue.Code != 535 || ue.EnhancedCode != [3]int{5, 7, 8} || !strings.Contains(ue.Message, "authentication failed") {
				t.Fatalf("Send() = %v; want Postfix's 535 5.7.8 authentication failed at AUTH\n%s", err, pf.Log())
			}
			if r := ue.Reply(); r.Code/100 != 4 {
				t.Errorf("Reply() = %d; want a temporary code for a client waiting on a failed upstream login", r.Code)
			}
			// The client's lines after Postfix's 535, from its own trace.
			var after []string
			seen := false
			for _, line := range strings.Split(trace.String(), "\n") {
				switch {
				case strings.Contains(line, `line="S: 535`):
					seen = true
				case seen && strings.Contains(line, `line="C: `):
					after = append(after, line)
				}
			}
			if !seen {
				t.Fatalf("the trace has no 535:\n%s", trace.String())
			}
			if strings.Contains(trace.String(), "I can break rules") {
				t.Errorf("Postfix answered the client with \"I can break rules, too\"")
			}
			for _, line := range after {
				if !strings.Contains(line, `line="C: QUIT"`) {
					t.Errorf("after the 535 the client sent %s", line)
				}
			}
			lines, commands := postfixSession(t, pf)
			// RFC 5321 §4.1.1.10: the client ends with QUIT, not a hang-up.
			if want := []string{"ehlo=2", "starttls=1", "auth=0/1", "quit=1"}; strings.Join(commands, " ") != strings.Join(want, " ") {
				t.Errorf("Postfix counted the commands %q; want %q", commands, want)
			}
			for _, line := range lines {
				for _, bad := range []string{"non-SMTP command", "I can break rules", "improper command pipelining", "reject:", "lost connection after AUTH"} {
					if strings.Contains(line, bad) {
						t.Errorf("Postfix logged %q: %s", bad, line)
					}
				}
				if strings.Contains(line, "warning:") && !strings.Contains(line, "SASL "+mech+" authentication failed") &&
					!strings.Contains(line, "SASL authentication failure") {
					t.Errorf("Postfix warned: %s", line)
				}
			}
			if t.Failed() {
				t.Logf("client trace:\n%s\nPostfix log:\n%s", trace.String(), pf.Log())
			}
		})
	}
}

// TestCorpusThroughPostfixSASL: with the right password, over STARTTLS,
// PLAIN and LOGIN each log in to Postfix and the whole corpus reaches
// smtp-sink through it as TestCorpusThroughPostfix compares it; Postfix
// logs each message as from the authenticated user with that mechanism.
func TestCorpusThroughPostfixSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			pf, sink := startPostfixSASL(t, mech)
			sent := sendCorpus(t, newSender(t, postfixSASLProfile(t, pf.Addr, postfixPassword), Options{}))
			checkRelayed(t, sent, sink.Messages(t, len(sent), 60*time.Second), true)
			log := pf.Log()
			checkPostfixLog(t, log)
			if n := strings.Count(log, "sasl_method="+mech+", sasl_username="+postfixUser+"\n"); n != len(sent) {
				t.Errorf("Postfix logged %d messages from %s with %s; want %d:\n%s", n, postfixUser, mech, len(sent), log)
			}
		})
	}
}
