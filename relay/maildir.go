package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/relaymail/relay/internal/syncdir"
	"github.com/relaymail/relay/upstream"
)

// Maildir delivers into a Maildir (tmp/, new/, cur/): each message is
// written to tmp/, fsynced and renamed into new/, the way an MDA does. It
// is the transport of the embedded default's "local" profile.
type Maildir struct {
	dir  string
	host string
	seq  atomic.Int64
}

// NewMaildir prepares the Maildir at dir, creating it if needed.
func NewMaildir(dir string) (*Maildir, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	if host == "" {
		host = "localhost"
	}
	return &Maildir{dir: dir, host: host}, nil
}

// Dir is the Maildir's directory.
func (m *Maildir) Dir() string { return m.dir }

// Open implements Transport.
func (m *Maildir) Open(context.Context) (Delivery, error) { return &maildirDelivery{m: m}, nil }

// uniqueName follows the Maildir naming convention: time, then
// microseconds, process and sequence, and random bits, then the host.
func (m *Maildir) uniqueName() string {
	now := time.Now()
	var r [4]byte
	rand.Read(r[:])
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), hex.EncodeToString(r[:]), m.host)
}

// deliver writes one message with a Return-Path header on top, line
// endings made LF as Unix mail tools expect.
func (m *Maildir) deliver(from string, body io.Reader) (string, error) {
	name := m.uniqueName()
	tmp := filepath.Join(m.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	err = func() error {
		w := bufio.NewWriterSize(f, 32<<10)
		fmt.Fprintf(w, "Return-Path: <%s>\n", from)
		if _, err := io.Copy(w, &lfReader{r: body}); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(m.dir, "new", name))
	}
	if err == nil {
		err = syncdir.Path(filepath.Join(m.dir, "new"))
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("maildir: write message: %w", err)
	}
	return name, nil
}

// lfReader turns CRLF into LF; a bare CR stays. It works for reads of any
// size: it converts into a buffer of its own and hands that out in pieces,
// so a caller that offers a 1-byte slice (bufio.Writer.ReadFrom with one
// byte of room left) gets one byte.
type lfReader struct {
	r   io.Reader
	in  []byte // what was read from r
	out []byte // converted, not yet returned
	buf []byte // out's backing array
	cr  bool   // the input so far ended in a CR that an LF may follow
	err error  // r's error, returned once out is used up
}

// lfBufSize is how much lfReader reads from r at once.
const lfBufSize = 32 << 10

func (l *lfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(l.out) == 0 {
		if l.err != nil {
			return 0, l.err
		}
		if l.in == nil {
			l.in = make([]byte, lfBufSize)
			l.buf = make([]byte, 0, lfBufSize+1) // +1: a CR held back from the last read
		}
		n, err := l.r.Read(l.in)
		l.out = l.convert(l.in[:n], l.buf[:0])
		if err != nil {
			if l.cr { // a CR at the very end is a bare one
				l.out = append(l.out, '\r')
				l.cr = false
			}
			l.err = err
		}
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}

// convert appends in to out with each CRLF made LF. A CR at the end of in
// is held back until the next input shows whether an LF follows it.
func (l *lfReader) convert(in, out []byte) []byte {
	for len(in) > 0 {
		if l.cr {
			l.cr = false
			if in[0] != '\n' {
				out = append(out, '\r') // a bare CR
			}
		}
		i := bytes.IndexByte(in, '\r')
		if i < 0 {
			return append(out, in...)
		}
		out = append(out, in[:i]...)
		l.cr = true
		in = in[i+1:]
	}
	return out
}

// maildirDelivery is a Delivery into a Maildir.
type maildirDelivery struct {
	m    *Maildir
	from string
	to   []string
	open bool
}

func (d *maildirDelivery) Mail(_ context.Context, msg *upstream.Message) error {
	d.from, d.to, d.open = msg.From, nil, true
	return nil
}

func (d *maildirDelivery) Rcpt(_ context.Context, to string) error {
	if !d.open {
		return errors.New("maildir: RCPT before MAIL")
	}
	d.to = append(d.to, to)
	return nil
}

func (d *maildirDelivery) Data(_ context.Context, body io.Reader) (string, error) {
	defer d.Reset(context.Background())
	name, err := d.m.deliver(d.from, body)
	if err != nil {
		return "", err
	}
	return "2.0.0 delivered to maildir as " + name, nil
}

func (d *maildirDelivery) Reset(context.Context) error {
	d.from, d.to, d.open = "", nil, false
	return nil
}

func (d *maildirDelivery) Send(ctx context.Context, msg *upstream.Message) (*upstream.Result, error) {
	d.Mail(ctx, msg)
	reply, err := d.Data(ctx, msg.Body)
	if err != nil {
		return nil, err
	}
	return &upstream.Result{Rcpts: make([]error, len(msg.To)), Reply: reply}, nil
}

func (d *maildirDelivery) Usable() bool { return true }

func (d *maildirDelivery) Close() error { return nil }
