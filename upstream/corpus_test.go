package upstream

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestCorpusThroughGoSMTP sends every corpus message, one connection per
// server flavour, to go-smtp's server with and without PIPELINING and
// CHUNKING, and checks that each arrives as sent, lines past 998 octets
// folded.
func TestCorpusThroughGoSMTP(t *testing.T) {
	corpus := testpeer.Corpus()
	for _, hide := range [][]string{nil, {"CHUNKING"}, {"PIPELINING"}, {"PIPELINING", "CHUNKING"}} {
		t.Run(fmt.Sprintf("without %v", hide), func(t *testing.T) {
			u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{Hide: hide})
			s := newSender(t, profileFor(u), Options{})
			ctx := context.Background()
			c, err := s.Dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, want := range hide {
				if c.ext.has(want) {
					t.Fatalf("the server still offers %s", want)
				}
			}
			for _, m := range corpus {
				msg := &Message{From: "app@example.com", To: []string{"ops@example.com", "two@example.com"}, Body: bytes.NewReader(m.Data), Size: int64(len(m.Data)), BodyType: "8BITMIME"}
				res, err := c.Send(ctx, msg)
				if err != nil || res.Accepted() != 2 {
					t.Fatalf("%s: Send() = %+v, %v", m.Name, res, err)
				}
			}
			got := u.Messages()
			if len(got) != len(corpus) {
				t.Fatalf("upstream got %d messages; want %d", len(got), len(corpus))
			}
			for i, m := range corpus {
				if want := testpeer.Fold(m.Data); !bytes.Equal(got[i].Data, want) {
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
