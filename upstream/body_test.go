package upstream

import (
	"bytes"
	"strings"
	"testing"

	"github.com/relaymail/relay/internal/corpus"
)

// dotStuff is the reference: a period added before every line that starts
// with one, one octet at a time.
func dotStuff(p []byte) []byte {
	var out []byte
	bol := true
	for _, c := range p {
		if bol && c == '.' {
			out = append(out, '.')
		}
		out = append(out, c)
		bol = c == '\n'
	}
	return out
}

// writeInPieces writes p in pieces of n octets.
func writeInPieces(t *testing.T, w interface{ Write([]byte) (int, error) }, p []byte, n int) {
	t.Helper()
	for len(p) > 0 {
		k := min(n, len(p))
		if m, err := w.Write(p[:k]); m != k || err != nil {
			t.Fatalf("Write = %d, %v; want %d", m, err, k)
		}
		p = p[k:]
	}
}

// TestFoldAndDotStuffAnyWriteSize: the per-line writers give what the
// octet-by-octet references give, whatever the size of the writes.
func TestFoldAndDotStuffAnyWriteSize(t *testing.T) {
	inputs := map[string][]byte{
		"dots":          []byte(".\r\n..\r\n.a\r\nb.\r\n\r\n.\r\n"),
		"998":           []byte(strings.Repeat("a", 998) + "\r\n" + strings.Repeat("b", 999) + "\r\n"),
		"1996-1997":     []byte(strings.Repeat("c", 1996) + "\r\n" + strings.Repeat("d", 1997) + "\r\n."),
		"5000 dots":     []byte(strings.Repeat(".", 5000) + "\r\n.end\r\n"),
		"no final CRLF": []byte("a\r\n.b"),
	}
	for _, m := range corpus.All() {
		if len(m.Data) < 100<<10 {
			inputs[m.Name] = m.Want()
		}
	}
	for name, in := range inputs {
		want := dotStuff(corpus.Fold(in))
		for _, n := range []int{1, 2, 3, 7, 997, 998, 999, 4096, len(in)} {
			var out bytes.Buffer
			dw := newDotWriter(&out)
			writeInPieces(t, &foldWriter{w: dw}, in, n)
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("%s in writes of %d: got %d bytes, differing at %d from the %d wanted", name, n, out.Len(), firstDiff(out.Bytes(), want), len(want))
			}
			for _, line := range bytes.Split(out.Bytes(), []byte("\r\n")) {
				if len(line) > maxLine+1 { // +1: a dot added to a full line
					t.Fatalf("%s in writes of %d: a line of %d octets", name, n, len(line))
				}
			}
		}
	}
}

func TestDotWriterClose(t *testing.T) {
	for in, want := range map[string]string{"": ".\r\n", "a\r\n": "a\r\n.\r\n", "a": "a\r\n.\r\n", ".": "..\r\n.\r\n"} {
		var out bytes.Buffer
		dw := newDotWriter(&out)
		dw.Write([]byte(in))
		if err := dw.close(); err != nil || out.String() != want {
			t.Errorf("%q: got %q, %v; want %q", in, out.String(), err, want)
		}
	}
}
