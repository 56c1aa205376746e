package upstream

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/relaymail/relay/internal/corpus"
	"github.com/relaymail/relay/internal/testpeer"
)

// corpusMessage is m as relay hands it to the upstream client: line
// endings made CRLF.
func corpusMessage(m *corpus.Message) *Message {
	body := m.Want()
	return &Message{From: m.From, To: m.To, Body: bytes.NewReader(body), Size: int64(len(body)), UTF8: m.UTF8, BodyType: m.BodyType}
}

// TestCorpusThroughGoSMTP sends every corpus message, one connection per
// server flavour, to go-smtp's server with and without PIPELINING and
// CHUNKING, and checks that each arrives as sent, lines past 998 octets
// folded.
func TestCorpusThroughGoSMTP(t *testing.T) {
	all := corpus.All()
	for _, hide := range [][]string{nil, {"CHUNKING"}, {"PIPELINING"}, {"PIPELINING", "CHUNKING"}} {
		t.Run(fmt.Sprintf("without %v", hide), func(t *testing.T) {
			u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Hide: hide})
			s := newSender(t, profileFor(u), Options{})
			ctx := context.Background()
			c := dialConn(t, s)
			for _, want := range hide {
				if c.ext.has(want) {
					t.Fatalf("the server still offers %s", want)
				}
			}
			for _, m := range all {
				res, err := c.Send(ctx, corpusMessage(m))
				if err != nil || res.Accepted() != len(m.To) {
					t.Fatalf("%s: Send() = %+v, %v", m.Name, res, err)
				}
			}
			got := u.Messages()
			if len(got) != len(all) {
				t.Fatalf("upstream got %d messages; want %d", len(got), len(all))
			}
			for i, m := range all {
				if got[i].UTF8 != m.UTF8 {
					t.Errorf("%s: upstream got SMTPUTF8 %v; want %v", m.Name, got[i].UTF8, m.UTF8)
				}
				if want := corpus.Fold(m.Want()); !bytes.Equal(got[i].Data, want) {
					t.Errorf("%s: upstream got %d bytes, differing from the %d sent (folded) at %d", m.Name, len(got[i].Data), len(want), firstDiff(got[i].Data, want))
				}
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// dialConn dials s for a test; the connection closes when the test ends.
func dialConn(t *testing.T, s *Sender) *Conn {
	t.Helper()
	c, err := s.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
