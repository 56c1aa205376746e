package relay

import (
	"bufio"
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

// lfReader turns CRLF into LF.
type lfReader struct {
	r  io.Reader
	cr bool // a CR ended the last read and was held back
}

func (l *lfReader) Read(p []byte) (int, error) {
	if len(p) < 2 {
		return 0, io.ErrShortBuffer
	}
	n, err := l.r.Read(p[:len(p)-1]) // room for a held-back CR
	if l.cr {
		copy(p[1:n+1], p[:n])
		p[0] = '\r'
		n++
		l.cr = false
	}
	out := 0
	for i := 0; i < n; i++ {
		b := p[i]
		if b == '\r' {
			if i+1 == n {
				l.cr = true // decide with the next read
				continue
			}
			if p[i+1] == '\n' {
				continue
			}
		}
		p[out] = b
		out++
	}
	if err != nil && l.cr {
		p[out] = '\r'
		out++
		l.cr = false
	}
	return out, err
}

// maildirDelivery is a Delivery into a Maildir.
type maildirDelivery struct {
	m    *Maildir
	from string
	to   []string
	open bool
}

func (d *maildirDelivery) Mail(_ context.Context, from string, _ int64, _ bool) error {
	d.from, d.to, d.open = from, nil, true
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
	d.Mail(ctx, msg.From, msg.Size, msg.UTF8)
	reply, err := d.Data(ctx, msg.Body)
	if err != nil {
		return nil, err
	}
	return &upstream.Result{Rcpts: make([]error, len(msg.To)), Reply: reply}, nil
}

func (d *maildirDelivery) Usable() bool { return true }

func (d *maildirDelivery) Close() error { return nil }
