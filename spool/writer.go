package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
)

// bufSize is the Writer's buffer: large enough that a typical message
// reaches the disk in one write, small enough for many sessions at once.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

var errWriterDone = errors.New("message already committed or aborted")

// Writer streams a new message into the spool. Write the message, then
// either Commit it, which queues it, or Abort it. A Writer is not safe for
// use by several goroutines at once.
type Writer struct {
	s       *Spool
	id      string
	env     *Envelope // the caller's, for Commit to fill in
	e       *Envelope // a copy of it with ID and Arrived set: what is stored
	f       *os.File  // queue/ID.tmp; nil once closed
	buf     *[]byte   // bytes not yet written to f, from bufPool; nil once returned
	flushed int64     // bytes written to f
	off     int64     // length of the envelope line: where the message starts
	sizeOff int64     // file offset of the padding for the size in the envelope line
	n       int64     // message bytes written
	done    bool      // Commit or Abort was called
	// recycled: f held an earlier message (recycle.go), so Commit cuts it
	// to this one's length.
	recycled bool
	err      error // the first write error, unwrapped; sticky
}

// Create starts a new message with the envelope env: the sender,
// recipients and profile are known before DATA. It checks env, picks the
// message's ID and writes the envelope line into queue/ID.tmp, which is
// not part of the queue until Commit renames it. Create copies env: later
// changes to it are not stored (Commit sets its ID, Size and Arrived).
// When env.Arrived is zero the message arrives now.
func (s *Spool) Create(ctx context.Context, env *Envelope) (*Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spool: create message: %w", err)
	}
	if err := env.check(); err != nil {
		return nil, fmt.Errorf("spool: create message: %w", err)
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.RUnlock()
	now := s.now()
	e := env.clone()
	if e.Arrived.IsZero() {
		e.Arrived = now
	}
	e.Size = 0
	e.normalize()
	// IDs increase strictly within this process, so the only message that
	// can have the same ID is one queued by an earlier run whose clock was
	// ahead: it is in the index, and the next ID differs in its random part
	// too. A temp file by the same name was swept by Open.
	for range 3 {
		id := s.ids.next(now)
		s.mu.Lock()
		_, taken := s.index[id]
		s.mu.Unlock()
		if taken {
			continue
		}
		f := s.reuse(id)
		recycled := f != nil
		if !recycled {
			var err error
			f, err = createExcl(s.tmpMsgPath(id))
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("spool: create message: %w", err)
			}
		}
		e.ID = id
		w := &Writer{s: s, id: id, env: env, e: e, f: f, recycled: recycled, buf: bufPool.Get().(*[]byte)}
		line, sizeOff, err := appendEnvLine((*w.buf)[:0], e)
		if err == nil && len(line) > cap(*w.buf) {
			// So many recipients that the line does not fit the buffer:
			// it goes to the file at once.
			_, err = f.Write(line)
			w.flushed = int64(len(line))
		} else if err == nil {
			*w.buf = line // in the pooled buffer, which it fits
		}
		if err != nil {
			w.done = true
			w.discard()
			return nil, fmt.Errorf("spool: create message %s: %w", id, err)
		}
		w.off, w.sizeOff = int64(len(line)), int64(sizeOff)
		return w, nil
	}
	return nil, errors.New("spool: create message: no unused queue id")
}

// ID returns the queue ID the message will have once committed, for logs.
func (w *Writer) ID() string { return w.id }

// Size returns the number of message bytes written so far (without the
// envelope line).
func (w *Writer) Size() int64 { return w.n }

// Write appends p to the message. After an error (a full disk, say) every
// later Write and Commit fails too; the caller should Abort.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		b := *w.buf
		if len(b) == 0 && len(p) >= cap(b) {
			// A large write with nothing pending goes straight through.
			k, err := w.f.Write(p)
			written += k
			w.n += int64(k)
			w.flushed += int64(k)
			if err != nil {
				return written, w.fail(err)
			}
			return written, nil
		}
		k := copy(b[len(b):cap(b)], p)
		*w.buf = b[:len(b)+k]
		p = p[k:]
		written += k
		w.n += int64(k)
		if len(*w.buf) == cap(*w.buf) {
			if err := w.flush(); err != nil {
				return written, w.fail(err)
			}
		}
	}
	return written, nil
}

// ReadFrom appends what r yields until EOF to the message, reading straight
// into the Writer's buffer: io.Copy to a Writer needs no buffer of its own.
// A read error is returned as it is (the client's side failed); a write
// error as Write returns it.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	var total int64
	for {
		if len(*w.buf) == cap(*w.buf) {
			if err := w.flush(); err != nil {
				return total, w.fail(err)
			}
		}
		b := *w.buf
		k, rerr := r.Read(b[len(b):cap(b)])
		if k < 0 || k > cap(b)-len(b) {
			return total, w.fail(errors.New("invalid count from Read"))
		}
		*w.buf = b[:len(b)+k]
		total += int64(k)
		w.n += int64(k)
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// usable reports why the Writer cannot take more bytes.
func (w *Writer) usable() error {
	if w.err != nil {
		return fmt.Errorf("spool: write message %s: %w", w.id, w.err)
	}
	if w.done {
		return fmt.Errorf("spool: write message %s: %w", w.id, errWriterDone)
	}
	return nil
}

// fail records the first write error and returns it wrapped.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return fmt.Errorf("spool: write message %s: %w", w.id, err)
}

// flush writes the pending bytes to the file.
func (w *Writer) flush() error {
	b := *w.buf
	if len(b) == 0 {
		return nil
	}
	k, err := w.f.Write(b)
	w.flushed += int64(k)
	*w.buf = b[:0]
	return err
}

// Commit queues the message: it writes the message's size into the
// envelope line, fsyncs the file once, renames queue/ID.tmp to
// queue/ID.mail (the commit point) and waits until the directory is fsynced
// (grouped with concurrent commits and updates). Only after Commit returns
// nil may the SMTP server answer 250. Commit sets the ID, Size and, when it
// was zero, Arrived of the envelope given to Create.
//
// On any error nothing is queued and the file is removed; the error wraps
// its cause, so errors.Is(err, syscall.ENOSPC) reports a full disk. The
// context is consulted before the file is fsynced; after that Commit runs
// to the end, so that a message is never queued while Commit reports
// failure. Either way the Writer is finished: a later Abort does nothing.
func (w *Writer) Commit(ctx context.Context) (string, error) {
	if w.done {
		return "", fmt.Errorf("spool: commit %s: %w", w.id, errWriterDone)
	}
	w.done = true
	if err := w.commit(ctx); err != nil {
		w.discard()
		return "", fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	return w.id, nil
}

func (w *Writer) commit(ctx context.Context) error {
	s := w.s
	if w.err != nil {
		return w.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The size goes into the padding of the envelope line: in the buffer
	// when the line is still there (any message up to the buffer's size),
	// else over what was written.
	if w.flushed == 0 {
		putSize((*w.buf)[w.sizeOff:], w.n)
	} else {
		var d [sizeWidth]byte
		if _, err := w.f.WriteAt(strconv.AppendInt(d[:0], w.n, 10), w.sizeOff); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	if w.recycled {
		if err := w.f.Truncate(w.flushed); err != nil {
			return err
		}
	}
	if !s.noSync {
		if err := w.f.Sync(); err != nil {
			return err
		}
	}
	if err := w.closeFile(); err != nil {
		return err
	}

	e := w.e
	e.Size = w.n
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.RUnlock()
	final := s.msgPath(w.id)
	if err := rename(s.tmpMsgPath(w.id), final); err != nil {
		return err
	}
	if err := s.syncQueue(); err != nil {
		// Whether the rename reached the disk is unknown; take the
		// message back so that it is not delivered after a 451.
		os.Remove(final)
		return err
	}
	s.mu.Lock()
	s.index[w.id] = entry{env: e, off: w.off}
	s.mu.Unlock()
	w.env.ID, w.env.Size, w.env.Arrived = e.ID, e.Size, e.Arrived
	return nil
}

// Abort discards the message: the client went away, the message is too
// big, a write failed. It removes the temp file. Abort after Commit, or a
// second Abort, does nothing.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.discard(); err != nil {
		return fmt.Errorf("spool: abort %s: %w", w.id, err)
	}
	return nil
}

// discard closes and removes the temp file.
func (w *Writer) discard() error {
	w.closeFile()
	if err := os.Remove(w.s.tmpMsgPath(w.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// closeFile returns the buffer to the pool and closes the file.
func (w *Writer) closeFile() error {
	if w.buf != nil {
		*w.buf = (*w.buf)[:0]
		bufPool.Put(w.buf)
		w.buf = nil
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
