package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/corpus"
)

// gateMessage is the messageReader of a gate that has just let a DATA
// command through and seen its 354, reading src; max is
// max_message_bytes (0: none).
func gateMessage(t testing.TB, src func([]byte) (int, error), max int64) (*lineGate, *messageReader) {
	t.Helper()
	g := newLineGate()
	g.replied([]byte("354 go ahead\r\n"))
	if !g.claimMessage() {
		t.Fatal("the gate has no message to claim after a 354")
	}
	if g.claimMessage() {
		t.Fatal("the gate's message was claimed twice")
	}
	return g, &messageReader{gate: g, src: src, limited: max > 0, left: max}
}

// goSMTPSide is what go-smtp reads from the gate after the message: the
// end of the message, the commands after it, and the error at the end.
func goSMTPSide(g *lineGate, src func([]byte) (int, error)) (string, error) {
	var out []byte
	p := make([]byte, 4096)
	for range 1 << 20 {
		n, err := g.read(p, src)
		out = append(out, p[:n]...)
		if err != nil {
			return string(out), err
		}
	}
	panic("unbounded")
}

// expectedData is what go-smtp's reader gives of a corpus message: the
// message as the client had it, with the CRLF that Wire adds.
func expectedData(m *corpus.Message) []byte {
	if bytes.HasSuffix(m.Data, []byte("\r\n")) {
		return m.Data
	}
	return append(append([]byte(nil), m.Data...), '\r', '\n')
}

// TestMessageReaderCorpus: relay's DATA reader gives every corpus message
// (sizes around 4, 32 and 64 KiB, 1 MB, a 5 MB attachment, a 5,000-octet
// line, dot lines, bare LF and bare CR) unstuffed and whole, whatever the
// sizes of the reads on either side of it (testing/iotest), and leaves
// the command after the message to go-smtp, which gets only ".\r\n" of
// the message.
func TestMessageReaderCorpus(t *testing.T) {
	sources := readerSources
	for _, m := range corpus.All() {
		wire := append(m.Wire(), "QUIT\r\n"...)
		want := expectedData(m)
		for sname, mk := range sources {
			if len(wire) > 1<<20 && sname == "one byte" {
				continue // 5 MB a byte at a time: slow, and "odd sizes" has 1-byte reads
			}
			for _, size := range []int{0, 1, 7, 4095, 64 << 10} {
				src := gateSource(mk(wire), io.EOF)
				g, r := gateMessage(t, src, 0)
				var got []byte
				var err error
				if size == 0 {
					// iotest.TestReader reads with many sizes, 1 octet included.
					err = iotest.TestReader(r, want)
					got = want
				} else {
					got, err = readWithSize(r, size)
				}
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s from a %s source, reads of %d: %d octets (differing at %d), %v; want the %d of the message",
						m.Name, sname, size, len(got), firstDiffString(string(got), string(want)), err, len(want))
				}
				if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
					t.Fatalf("%s: a read after the end = %d, %v; want 0, EOF", m.Name, n, err)
				}
				if rest, err := goSMTPSide(g, src); rest != ".\r\nQUIT\r\n" || err != io.EOF {
					t.Fatalf("%s from a %s source, reads of %d: go-smtp read %q, %v; want the end of the message, QUIT, EOF", m.Name, sname, size, rest, err)
				}
			}
		}
	}
}

// TestMessageReaderErrors: a client that hangs up in the middle of a
// message gives io.ErrUnexpectedEOF after what it sent, a read error (a
// timeout) comes out as it is, and both come again on later reads and to
// go-smtp, which never gets the octets of the message.
func TestMessageReaderErrors(t *testing.T) {
	for _, end := range []error{io.EOF, os.ErrDeadlineExceeded} {
		for in, want := range map[string]string{
			"": "", "line\r\n": "line\r\n", "line\r\npart": "line\r\npart",
			"a\r\n.": "a\r\n", "a\r\n.\r": "a\r\n", "a\n.\n": "a\n.\n", "a\r\n..\r\n": "a\r\n.\r\n",
		} {
			src := gateSource(iotest.HalfReader(strings.NewReader(in)), end)
			g, r := gateMessage(t, src, 0)
			got, err := readWithSize(r, 3)
			wantErr := end
			if end == io.EOF {
				wantErr = io.ErrUnexpectedEOF
			}
			if string(got) != want || err != wantErr {
				t.Errorf("%q then %v: got %q, %v; want %q, %v", in, end, got, err, want, wantErr)
			}
			if n, err := r.Read(make([]byte, 10)); n != 0 || err != wantErr {
				t.Errorf("%q then %v: a read after the error = %d, %v; want 0, %v again", in, end, n, err, wantErr)
			}
			if rest, err := goSMTPSide(g, src); rest != "" || err != end {
				t.Errorf("%q then %v: go-smtp read %q, %v; want nothing, %v", in, end, rest, err, end)
			}
		}
	}
}

// TestMessageReaderUnreadRest: when the session stops reading before the
// end (a refusal, a full disk), the gate skips the rest of the message
// itself, and go-smtp gets only its end and the next command.
func TestMessageReaderUnreadRest(t *testing.T) {
	body := strings.Repeat("line of text\r\n..dot\r\n", 5000)
	for _, read := range []int{0, 1, 100, 50_000} {
		src := gateSource(iotest.HalfReader(strings.NewReader(body+".\r\nNOOP\r\nQUIT\r\n")), io.EOF)
		g, r := gateMessage(t, src, 0)
		if read > 0 {
			if _, err := io.ReadFull(r, make([]byte, read)); err != nil {
				t.Fatal(err)
			}
		}
		if rest, err := goSMTPSide(g, src); rest != ".\r\nNOOP\r\nQUIT\r\n" || err != io.EOF {
			t.Errorf("after %d octets read: go-smtp read %q, %v; want the end of the message, NOOP, QUIT", read, rest, err)
		}
	}
}

// TestMessageReaderLikeGoSMTP: relay's DATA reader cuts and unstuffs
// every message exactly as go-smtp's reader does, quirks included (a "."
// after a bare LF or CR is data: no SMTP smuggling), with and without a
// max_message_bytes limit: go-smtp's own server, over loopback, is the
// reference. The messages are every string of up to 5 octets of ".",
// CR, LF and "a" with "\r\n.\r\n" after it, and the corpus.
func TestMessageReaderLikeGoSMTP(t *testing.T) {
	type result struct {
		data    string
		tooBig  bool
		ended   bool
		problem string
	}
	var cases [][]byte
	var grow func(prefix []byte, n int)
	grow = func(prefix []byte, n int) {
		cases = append(cases, append(append([]byte(nil), prefix...), "\r\n.\r\n"...))
		if n == 0 {
			return
		}
		for _, c := range []byte(".\r\na") {
			grow(append(prefix, c), n-1)
		}
	}
	grow(nil, 5)
	for _, m := range corpus.All() {
		cases = append(cases, m.Wire())
	}
	for _, max := range []int64{0, 4} {
		if max > 0 {
			cases = cases[:len(cases)-len(corpus.All())] // the corpus once is enough
		}
		// relay reads a message of exactly max octets whole, as SIZE and
		// BDAT accept it, where go-smtp's DATA reader refuses it: the
		// reference is go-smtp with a limit of max+1.
		refMax := max
		if max > 0 {
			refMax = max + 1
		}
		addr, got := startGoSMTPReference(t, refMax)
		relayRead := func(wire []byte) result {
			g, r := gateMessage(t, gateSource(bytes.NewReader(wire), io.EOF), max)
			got, err := io.ReadAll(r)
			res := result{data: string(got), tooBig: err == smtp.ErrDataTooLarge, ended: err == nil}
			if err != nil && !res.tooBig && err != io.ErrUnexpectedEOF {
				res.problem = err.Error()
			}
			_ = g
			return res
		}
		var wg sync.WaitGroup
		work := make(chan []byte)
		var mu sync.Mutex
		var failures []string
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for wire := range work {
					ref, err := goSMTPRead(addr, got, wire)
					var want result
					switch {
					case err != nil:
						want.problem = err.Error()
					case ref.code == 552:
						want = result{data: ref.data, tooBig: true}
					case ref.code == 250:
						want = result{data: ref.data, ended: true}
					default:
						want.problem = fmt.Sprintf("reply %d", ref.code)
					}
					got := relayRead(wire)
					if max > 0 && want.tooBig {
						// Refused: what Data saw before the limit struck is
						// max octets from relay, max+1 from the reference.
						got.data = got.data[:min(len(got.data), int(max))]
						want.data = want.data[:min(len(want.data), int(max))]
					}
					if got != want {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("limit %d, %q: relay %+v, go-smtp %+v", max, wire[:min(len(wire), 80)], got, want))
						mu.Unlock()
					}
				}
			}()
		}
		for _, w := range cases {
			// A CR after a CR keeps go-smtp from seeing the next line start
			// ("\r\r\n.\r\n" does not end a message): a second end line
			// ends every message.
			work <- append(w, "x\r\n.\r\n"...)
		}
		close(work)
		wg.Wait()
		for _, f := range failures[:min(len(failures), 20)] {
			t.Error(f)
		}
	}
}

// goSMTPReference is a go-smtp backend that keeps what each session's Data
// read, under the client's address.
type goSMTPReference struct{ got *sync.Map }

func (b goSMTPReference) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return refSession{got: b.got, client: c.Conn().RemoteAddr().String()}, nil
}

type refSession struct {
	got    *sync.Map
	client string
}

func (refSession) AuthMechanisms() []string             { return nil }
func (refSession) Auth(string) (sasl.Server, error)     { return nil, smtp.ErrAuthUnsupported }
func (refSession) Mail(string, *smtp.MailOptions) error { return nil }
func (refSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (refSession) Reset()                               {}
func (refSession) Logout() error                        { return nil }
func (s refSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.got.Store(s.client, b)
	return err
}

// startGoSMTPReference starts go-smtp's own server, line checks off as
// relay runs it. What its sessions' Data read is kept in the map, under
// the client's address.
func startGoSMTPReference(t *testing.T, max int64) (string, *sync.Map) {
	got := &sync.Map{}
	s := smtp.NewServer(goSMTPReference{got: got})
	s.Domain, s.MaxLineLength, s.MaxMessageBytes = "reference", 0, max
	s.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String(), got
}

type refResult struct {
	code int
	data string
}

// goSMTPRead sends wire after a DATA command to the reference server and
// returns the reply and what its Data read (kept in got before the reply
// goes out).
func goSMTPRead(addr string, got *sync.Map, wire []byte) (refResult, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return refResult{}, err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("HELO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")); err != nil {
		return refResult{}, err
	}
	for _, want := range []string{"220", "250", "250", "250", "354"} {
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, want) {
			return refResult{}, fmt.Errorf("reference server: %q, %v; want %s", line, err, want)
		}
	}
	if _, err := c.Write(wire); err != nil {
		return refResult{}, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return refResult{}, err
	}
	var code int
	fmt.Sscanf(line, "%d", &code)
	data, _ := got.LoadAndDelete(c.LocalAddr().String())
	b, _ := data.([]byte)
	return refResult{code: code, data: string(b)}, nil
}

// TestMessageReaderBareLFClient: after a DATA command ended by a bare LF
// (a script's printf piped into nc), the message ends with ".\n" as with
// ".\r\n", and a line that starts with a dot loses it, whatever the read
// sizes; go-smtp gets only ".\r\n" of it and then the next command. After
// "DATA\r\n" the same octets do not end the message (SMTP smuggling).
func TestMessageReaderBareLFClient(t *testing.T) {
	tests := []struct{ wire, want string }{
		{"Subject: lf\n\n..dot\nbody\n.\n", "Subject: lf\n\n.dot\nbody\n"},
		{"a\r\n..b\r\n.\r\n", "a\r\n.b\r\n"},
		{"a\n\n.\r\n", "a\n\n"},
		{".\n", ""},
		{"\n.\n", "\n"},
		{strings.Repeat("x", 70<<10) + "\n.\n", strings.Repeat("x", 70<<10) + "\n"},
	}
	for _, tt := range tests {
		for sname, mk := range readerSources {
			for _, size := range []int{1, 7, 4096} {
				src := gateSource(mk([]byte("DATA\n"+tt.wire+"QUIT\n")), io.EOF)
				g := newLineGate()
				if line, err := readWithSize(io.LimitReader(readerFunc(func(p []byte) (int, error) { return g.read(p, src) }), 5), 5); err != nil || string(line) != "DATA\n" {
					t.Fatalf("the gate gave %q, %v; want the DATA line", line, err)
				}
				g.replied([]byte("354 go ahead\r\n"))
				g.claimMessage()
				got, err := readWithSize(&messageReader{gate: g, src: src}, size)
				if err != nil || string(got) != tt.want {
					t.Fatalf("%q from a %s source, reads of %d: %q, %v; want %q", tt.wire, sname, size, got, err, tt.want)
				}
				if rest, err := goSMTPSide(g, src); rest != ".\r\nQUIT\n" || err != io.EOF {
					t.Fatalf("%q from a %s source, reads of %d: go-smtp read %q, %v; want the end of the message, QUIT, EOF", tt.wire, sname, size, rest, err)
				}
			}
		}
	}
	// The same message after "DATA\r\n": ".\n" is data.
	src := gateSource(strings.NewReader("DATA\r\nbody\n.\nQUIT\n"), io.EOF)
	g := newLineGate()
	readWithSize(io.LimitReader(readerFunc(func(p []byte) (int, error) { return g.read(p, src) }), 6), 6)
	g.replied([]byte("354 go ahead\r\n"))
	g.claimMessage()
	if got, err := readWithSize(&messageReader{gate: g, src: src}, 4096); err != io.ErrUnexpectedEOF || string(got) != "body\n.\nQUIT\n" {
		t.Fatalf("after DATA<CRLF>: %q, %v; want all of it as data, then the hang-up", got, err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
