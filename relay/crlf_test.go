package relay

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// convertByByte is the plain definition crlfReader must agree with: every
// bare LF and bare CR becomes CRLF.
func convertByByte(in []byte) (out []byte, normalized int) {
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case in[i] == '\r' || in[i] == '\n':
			out = append(out, '\r', '\n')
			normalized++
		default:
			out = append(out, in[i])
		}
	}
	return out, normalized
}

// chunkReader returns its data in pieces of the given sizes, in turn.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestCRLFReader(t *testing.T) {
	inputs := []string{
		"", "a", "\r", "\n", "\r\n", "\n\r", "\r\r\n", "\r\n\r\n", "a\rb\nc\r\nd",
		"Subject: x\r\n\r\nbody\r\n", "Subject: x\n\nbody\n", "first\n.\nMAIL FROM:<e@x>\r\n",
		"bare\rcr\r\n", "ends in cr\r", "\r\r\r\r\n\n\n",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, rng.IntN(3000))
		for i := range b {
			b[i] = "ab\r\n"[rng.IntN(4)]
			if rng.IntN(3) > 0 {
				b[i] = 'x'
			}
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		want, wantN := convertByByte([]byte(in))
		for _, chunks := range [][]int{{1}, {2, 3}, {7}, {4096}, {1, 100, 5}} {
			for _, readSize := range []int{1, 2, 3, 5, 64, 40 << 10} {
				c := newCRLFReader(&chunkReader{data: []byte(in), sizes: chunks})
				var got []byte
				p := make([]byte, readSize)
				for {
					n, err := c.Read(p)
					got = append(got, p[:n]...)
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(got, want) || c.Normalized != wantN {
					t.Fatalf("%q in chunks %v, read %d at a time: %q, %d normalised; want %q, %d",
						in, chunks, readSize, got, c.Normalized, want, wantN)
				}
			}
		}
	}
	if err := iotest.TestReader(newCRLFReader(bytes.NewReader([]byte("a\nb\rc\r\n"))), []byte("a\r\nb\r\nc\r\n")); err != nil {
		t.Error(err)
	}
}

// BenchmarkCRLFReader converts a 10 KB message with CRLF line endings, read
// into a 32 KB buffer as the spool's Writer does.
func BenchmarkCRLFReader(b *testing.B) {
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\r\n"), 160)
	p := make([]byte, 32<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		c := newCRLFReader(bytes.NewReader(msg))
		for {
			if _, err := c.Read(p); err != nil {
				break
			}
		}
	}
}
