package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// readerCase is one of relay's io.Readers with what it must make of an
// input.
type readerCase struct {
	name string
	wrap func(io.Reader) io.Reader
	want func([]byte) []byte
}

var readerCases = []readerCase{
	{"lfReader", func(r io.Reader) io.Reader { return &lfReader{r: r} },
		func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }},
	{"crlfReader", func(r io.Reader) io.Reader { return newCRLFReader(r) }, toCRLF},
	{"headerLimitReader", func(r io.Reader) io.Reader { return newHeaderLimitReader(r, 1<<30) }, same},
	{"readErrRecorder", func(r io.Reader) io.Reader { return &readErrRecorder{r: r} }, same},
	{"countingReader", func(r io.Reader) io.Reader { return &countingReader{r: r} }, same},
}

func same(b []byte) []byte { return b }

// toCRLF is what crlfReader must make of b (crlf_test.go).
func toCRLF(b []byte) []byte {
	out, _ := convertByByte(b)
	return out
}

// readerInputs are messages across the sizes of relay's and the
// standard library's buffers, with line endings of every kind, and a CR
// as the last byte of a buffer.
func readerInputs() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	in := map[string][]byte{
		"empty":       nil,
		"one byte":    []byte("x"),
		"lone CR":     []byte("\r"),
		"lone LF":     []byte("\n"),
		"CRLF":        []byte("\r\n"),
		"CR CR LF":    []byte("a\r\r\nb\r"),
		"mixed":       []byte("a\nb\rc\r\nd\n\r.\r\n..\r\n"),
		"header+body": []byte("Subject: x\r\n\r\nbody\r\n"),
	}
	for _, size := range []int{4<<10 - 1, 4<<10 + 1, 16 << 10, 32<<10 - 1, 32<<10 + 1, 64<<10 + 1} {
		b := make([]byte, size)
		for i := range b {
			b[i] = "abc \r\n\r\n\x80\xff"[rng.IntN(10)]
		}
		in[fmt.Sprintf("%d random", size)] = b
	}
	for _, size := range []int{4 << 10, 16 << 10, 32 << 10, 64 << 10} {
		// A CR at the end of the first buffer, its LF in the next.
		c := bytes.Repeat([]byte("y"), size)
		c[size-1] = '\r'
		in[fmt.Sprintf("%d CR at the end", size)] = append(c, "\nz\r\n"...)
	}
	return in
}

// readerSources give a test's input in reads of every kind of size
// (testing/iotest), since every io.Reader must work for any len(p) >= 1.
var readerSources = map[string]func([]byte) io.Reader{
	"plain":     func(b []byte) io.Reader { return bytes.NewReader(b) },
	"one byte":  func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
	"half":      func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	"data+err":  func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	"odd sizes": func(b []byte) io.Reader { return &oddReader{r: bytes.NewReader(b)} },
}

// TestReadersAnyBufferSize: every io.Reader in relay yields the same bytes
// whatever the sizes of the reads below and above it (testing/iotest).
func TestReadersAnyBufferSize(t *testing.T) {
	inputs := readerInputs()
	sources := readerSources
	for _, rc := range readerCases {
		t.Run(rc.name, func(t *testing.T) {
			for name, in := range inputs {
				want := rc.want(in)
				for sname, src := range sources {
					// iotest.TestReader reads with many sizes, 1 byte included.
					// (It begins with Read(nil), on which DataErrReader spins.)
					if sname != "data+err" {
						if err := iotest.TestReader(rc.wrap(src(in)), want); err != nil {
							t.Errorf("%s from a %s reader: %v", name, sname, err)
						}
					}
					for _, size := range []int{1, 4095} {
						got, err := readWithSize(rc.wrap(src(in)), size)
						if err != nil || !bytes.Equal(got, want) {
							t.Errorf("%s from a %s reader, read %d bytes at a time: %d bytes, %v; want %d bytes", name, sname, size, len(got), err, len(want))
						}
					}
				}
			}
		})
	}
}

// TestReadersPassErrorsOn: an error below comes out after the data before
// it, and again on the next read.
func TestReadersPassErrorsOn(t *testing.T) {
	boom := errors.New("boom")
	for _, rc := range readerCases {
		in := []byte("Subject: x\r\n\r\nabc\r\n")
		r := rc.wrap(io.MultiReader(bytes.NewReader(in), iotest.ErrReader(boom)))
		got, err := readWithSize(r, 1)
		if !errors.Is(err, boom) || !bytes.Equal(got, rc.want(in)) {
			t.Errorf("%s: got %q, %v; want %q, %v", rc.name, got, err, rc.want(in), boom)
		}
	}
}

// readWithSize reads r to its end with reads of at most size bytes.
func readWithSize(r io.Reader, size int) ([]byte, error) {
	var out []byte
	buf := make([]byte, size)
	for i := 0; i < 1<<24; i++ {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
	return out, errors.New("no end after 16M reads")
}

// oddReader returns 1, 2, 3, ... 13 bytes per read, over and over.
type oddReader struct {
	r io.Reader
	n int
}

func (o *oddReader) Read(p []byte) (int, error) {
	o.n = o.n%13 + 1
	return o.r.Read(p[:min(len(p), o.n)])
}

// TestMaildirAnySize: the Maildir transport stores messages of every size
// across its buffers, read in any pieces, with LF line endings. A message
// over 32 KiB used to fail with "short buffer" (bufio.Writer.ReadFrom
// offered the LF converter a 1-byte slice).
func TestMaildirAnySize(t *testing.T) {
	dir := t.TempDir()
	m, err := NewMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 4<<10 - 1, 4<<10 + 1, 32<<10 - 1, 32 << 10, 32<<10 + 1, 33914, 64<<10 + 1, 1 << 20} {
		line := "0123456789 abcdefghijklmnopqrstuvwxyz\r\n"
		body := strings.Repeat(line, size/len(line)+1)[:size]
		srcs := []io.Reader{strings.NewReader(body), iotest.HalfReader(strings.NewReader(body)), &oddReader{r: strings.NewReader(body)}}
		if size <= 64<<10+1 {
			srcs = append(srcs, iotest.OneByteReader(strings.NewReader(body)))
		}
		for _, src := range srcs {
			name, err := m.deliver("a@example.com", src)
			if err != nil {
				t.Fatalf("deliver %d bytes: %v", size, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "new", name))
			if err != nil {
				t.Fatal(err)
			}
			want := "Return-Path: <a@example.com>\n" + strings.ReplaceAll(body, "\r\n", "\n")
			if string(got) != want {
				t.Fatalf("deliver %d bytes: stored %d bytes; want %d", size, len(got), len(want))
			}
		}
	}
}

// TestLFReaderUnderBufioReadFrom: bufio.Writer.ReadFrom fills whatever
// room its buffer has left, down to one byte.
func TestLFReaderUnderBufioReadFrom(t *testing.T) {
	for _, bufSize := range []int{16, 17, 4096, 32 << 10} {
		in := bytes.Repeat([]byte("ab\r\ncd\re\n"), 10000)
		var out bytes.Buffer
		w := bufio.NewWriterSize(&out, bufSize)
		w.WriteString("Return-Path: <>\n") // leaves odd room
		if _, err := w.ReadFrom(&lfReader{r: bytes.NewReader(in)}); err != nil {
			t.Fatalf("buffer %d: ReadFrom: %v", bufSize, err)
		}
		w.Flush()
		want := "Return-Path: <>\n" + strings.ReplaceAll(string(in), "\r\n", "\n")
		if out.String() != want {
			t.Errorf("buffer %d: %d bytes; want %d", bufSize, out.Len(), len(want))
		}
	}
}
