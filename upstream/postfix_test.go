package upstream

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/corpus"
	"github.com/relaymail/relay/internal/testpeer"
)

// sinkProfile points a profile at host:port.
func sinkProfile(t *testing.T, addr string) *config.Profile {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	p := profileFor(&testpeer.Upstream{Host: host}, func(p *config.Profile) { p.SMTPTimeout = config.Duration(30 * time.Second) })
	p.Port, _ = strconv.Atoi(port)
	return p
}

// sendCorpus sends every corpus message that needs no SMTPUTF8 on one
// connection (smtp-sink does not offer it; the 553 is tested elsewhere),
// and returns them.
func sendCorpus(t *testing.T, s *Sender) []*corpus.Message {
	t.Helper()
	ctx := context.Background()
	c := dialConn(t, s)
	var sent []*corpus.Message
	for _, m := range corpus.All() {
		if m.UTF8 {
			continue
		}
		if res, err := c.Send(ctx, corpusMessage(m)); err != nil || res.Accepted() != len(m.To) {
			t.Fatalf("%s: Send() = %+v, %v", m.Name, res, err)
		}
		sent = append(sent, m)
	}
	return sent
}

// lf is a message as a dump file holds it: LF line endings.
func lf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

// bodyOf is what follows the first empty line.
func bodyOf(b []byte) []byte {
	if _, body, ok := bytes.Cut(b, []byte("\n\n")); ok {
		return body
	}
	return nil
}

// subjectOf is a message's Subject line, "" if it has none.
func subjectOf(b []byte) string {
	for _, line := range strings.Split(string(lf(b)), "\n") {
		if line == "" {
			break
		}
		if strings.HasPrefix(line, "Subject: ") {
			return line
		}
	}
	return ""
}

// checkRelayed matches the messages a sink got to the corpus by subject
// and compares them (whole, or only their bodies when a relay between
// added header fields).
func checkRelayed(t *testing.T, sent []*corpus.Message, got [][]byte, bodiesOnly bool) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("the sink got %d messages; want %d", len(got), len(sent))
	}
	bySubject := map[string][]byte{}
	for _, g := range got {
		bySubject[subjectOf(g)] = g
	}
	for _, m := range sent {
		g, ok := bySubject[subjectOf(m.Want())]
		want := lf(corpus.Fold(m.Want()))
		if bodiesOnly {
			g, want = bodyOf(g), bodyOf(want)
		}
		if !ok || !bytes.Equal(g, want) {
			t.Errorf("%s: the sink got %d bytes (found: %v), differing from the %d sent at %d", m.Name, len(g), ok, len(want), firstDiff(g, want))
		}
	}
}

// TestCorpusThroughSmtpSink: Postfix's smtp-sink (DATA only; with and
// without PIPELINING) receives every corpus message as sent, folded.
func TestCorpusThroughSmtpSink(t *testing.T) {
	for _, opts := range [][]string{nil, {"-p"}} {
		t.Run(strings.Join(append([]string{"smtp-sink"}, opts...), " "), func(t *testing.T) {
			sink := testpeer.StartSink(t, opts...)
			sent := sendCorpus(t, newSender(t, sinkProfile(t, sink.Addr), Options{}))
			checkRelayed(t, sent, sink.Messages(t, len(sent), 20*time.Second), false)
		})
	}
}

// TestCorpusThroughPostfix: a private Postfix smtpd takes every corpus
// message from the client and relays it to smtp-sink with its body
// intact, the 5,000-character line folded and nothing lost, and logs no
// complaint about the client.
func TestCorpusThroughPostfix(t *testing.T) {
	sink := testpeer.StartSink(t)
	pf := testpeer.StartPostfix(t, sink.Addr)
	sent := sendCorpus(t, newSender(t, sinkProfile(t, pf.Addr), Options{}))
	checkRelayed(t, sent, sink.Messages(t, len(sent), 60*time.Second), true)
	checkPostfixLog(t, pf.Log())
}

// checkPostfixLog fails the test if Postfix's log has a complaint about
// the client ("lost connection after CONNECT" is the start-up probe).
func checkPostfixLog(t *testing.T, log string) {
	t.Helper()
	for _, complaint := range []string{"non-SMTP command", "I can break rules", "improper command pipelining", "lost connection after B", "lost connection after D", "lost connection after E", "lost connection after R", "too long", "reject:"} {
		if strings.Contains(log, complaint) {
			t.Errorf("Postfix logged %q about the client:\n%s", complaint, log)
		}
	}
}
