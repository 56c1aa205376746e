package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// These benchmarks measure go-smtp's inbound message readers, for the
// change to go-smtp proposed in docs/design.md: DATA goes through go-smtp's
// dataReader, a bufio.Reader.ReadByte call and a state machine step per
// octet; BDAT is an io.CopyN of the chunk. unstuffLines is the per-line
// DATA reader proposed upstream. relay itself no longer reads DATA through
// go-smtp (datareader.go); BenchmarkRelayInbound measures relay's path.

type discardBackend struct{}

func (discardBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }

type discardSession struct{}

func (discardSession) AuthMechanisms() []string             { return nil }
func (discardSession) Auth(string) (sasl.Server, error)     { return nil, smtp.ErrAuthUnsupported }
func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Reset()                               {}
func (discardSession) Logout() error                        { return nil }
func (discardSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// BenchmarkGoSMTPInbound: go-smtp's server taking a 1 MiB message by DATA
// and by BDAT, over loopback, MaxLineLength 0 (as relay runs it).
func BenchmarkGoSMTPInbound(b *testing.B) {
	body := benchMessage(1 << 20)
	stuffed := bytes.ReplaceAll(body, []byte("\r\n."), []byte("\r\n.."))
	for _, mode := range []string{"DATA", "BDAT"} {
		b.Run(mode, func(b *testing.B) {
			s := smtp.NewServer(discardBackend{})
			s.Domain, s.MaxLineLength, s.MaxMessageBytes = "bench", 0, 64<<20
			s.ErrorLog = log.New(io.Discard, "", 0)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go s.Serve(ln)
			defer s.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			expect := func(code string) { benchExpect(b, r, code) }
			expect("220")
			fmt.Fprintf(c, "EHLO bench\r\n")
			expect("250")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				fmt.Fprintf(c, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
				expect("250")
				expect("250")
				if mode == "DATA" {
					fmt.Fprintf(c, "DATA\r\n")
					expect("354")
					c.Write(stuffed)
					c.Write([]byte(".\r\n"))
				} else {
					fmt.Fprintf(c, "BDAT %d LAST\r\n", len(body))
					c.Write(body)
				}
				expect("250")
			}
		})
	}
}

// unstuffLines is the proposed DATA reader: it takes one line at a time
// from a bufio.Reader (ReadSlice), drops the period that dot-stuffing
// added, and ends at the "." line (RFC 5321 §4.5.2). Only CRLF ends a line,
// as in go-smtp's reader (a "." after a bare LF is data: no smuggling). A
// line longer than the bufio buffer comes in pieces; only a piece that
// starts a line is looked at.
type unstuffLines struct {
	r    *bufio.Reader
	bol  bool   // the next octet starts a line
	cr   bool   // the last octet was a CR
	rest []byte // part of a line not yet returned
	done bool
}

var errUnexpectedEnd = errors.New("message cut short")

func (u *unstuffLines) Read(p []byte) (int, error) {
	for len(u.rest) == 0 {
		if u.done {
			return 0, io.EOF
		}
		line, err := u.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = errUnexpectedEnd
			}
			return 0, err
		}
		if u.bol && line[0] == '.' {
			if string(line) == ".\r\n" {
				u.done = true
				return 0, io.EOF
			}
			line = line[1:]
		}
		last := line[len(line)-1]
		u.bol = last == '\n' && (len(line) > 1 && line[len(line)-2] == '\r' || len(line) == 1 && u.cr)
		u.cr = last == '\r'
		u.rest = line
	}
	n := copy(p, u.rest)
	u.rest = u.rest[n:]
	return n, nil
}

// BenchmarkDATAReaders: the cost of reading a dot-stuffed 1 MiB message
// from memory, per octet as go-smtp does (a ReadByte state machine, as in
// its dataReader), per line (unstuffLines), and as relay does
// (messageReader over a lineGate).
func BenchmarkDATAReaders(b *testing.B) {
	body := benchMessage(1 << 20)
	wire := append(bytes.ReplaceAll(body, []byte("\r\n."), []byte("\r\n..")), ".\r\n"...)
	readers := map[string]func(*bufio.Reader) io.Reader{
		"per-octet": func(r *bufio.Reader) io.Reader { return &perOctet{r: r, bol: true} },
		"per-line":  func(r *bufio.Reader) io.Reader { return &unstuffLines{r: r, bol: true} },
		// relay's own (datareader.go), over a line gate as in a session.
		"relay": func(r *bufio.Reader) io.Reader { _, m := gateMessage(b, r.Read, 0); return m },
	}
	for name, mk := range readers {
		b.Run(name, func(b *testing.B) {
			src := bytes.NewReader(wire)
			br := bufio.NewReader(src)
			buf := make([]byte, 32<<10)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(wire)
				br.Reset(src)
				var out int64
				rd := mk(br)
				for {
					n, err := rd.Read(buf)
					out += int64(n)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				_ = out
			}
		})
	}
}

// perOctet mirrors go-smtp's dataReader loop: one ReadByte per octet.
type perOctet struct {
	r    *bufio.Reader
	bol  bool
	dot  bool
	done bool
}

func (d *perOctet) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && !d.done {
		c, err := d.r.ReadByte()
		if err != nil {
			return n, errUnexpectedEnd
		}
		switch {
		case d.bol && c == '.':
			d.dot, d.bol = true, false
			continue
		case d.dot && c == '\r':
			if nxt, _ := d.r.Peek(1); len(nxt) == 1 && nxt[0] == '\n' {
				d.r.ReadByte()
				d.done = true
				continue
			}
		}
		d.dot = false
		d.bol = c == '\n'
		p[n] = c
		n++
	}
	if d.done && n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func TestUnstuffLinesAnyReadSize(t *testing.T) {
	body := benchMessage(100 << 10)
	body = append(body, []byte(".\r\n..x\r\n"+strings.Repeat("y", 9000)+"\r\nbare\n.\r\nlf\r\n")...)
	wire := append(bytes.ReplaceAll(append([]byte("\r\n"), body...), []byte("\r\n."), []byte("\r\n.."))[2:], ".\r\nQUIT\r\n"...)
	for _, n := range []int{1, 7, 4096, 1 << 20} {
		br := bufio.NewReaderSize(bytes.NewReader(wire), 16)
		got, err := io.ReadAll(io.LimitReader(&chunked{r: &unstuffLines{r: br, bol: true}, n: n}, 1<<30))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("reads of %d: got %d bytes, %v; want the %d sent", n, len(got), err, len(body))
		}
		if rest, _ := io.ReadAll(br); string(rest) != "QUIT\r\n" {
			t.Fatalf("reads of %d: the next command is %q", n, rest)
		}
	}
}

// chunked reads at most n octets at a time.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// benchMessage is a text message of about size octets with some lines that
// start with a period.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nSubject: bench\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		if i%50 == 0 {
			b.WriteString(".a line that starts with a period\r\n")
		}
		b.WriteString(strings.Repeat("abcdefghij", 7) + "abcdef\r\n")
	}
	return b.Bytes()
}
