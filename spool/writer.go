package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// bufSize is the Writer's buffer: large enough that a typical message
// reaches the disk in a few writes, small enough for many sessions at once.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}

var errWriterDone = errors.New("message already committed or aborted")

// Writer streams the body of a new message into the spool. Write the
// message, then either Commit it, which queues it, or Abort it. A Writer is
// not safe for use by several goroutines at once.
type Writer struct {
	s       *Spool
	id      string
	f       *os.File      // nil once closed
	bw      *bufio.Writer // nil once returned to the pool
	done    bool          // Commit or Abort was called
	n       int64         // bytes written
	arrived time.Time
	err     error // the first write error, unwrapped; sticky
}

// Create starts a new message. Its body goes straight to queue/ID.eml, which
// is not part of the queue until Commit writes the envelope.
func (s *Spool) Create(ctx context.Context) (*Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spool: create message: %w", err)
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.RUnlock()
	arrived := s.now()
	// IDs increase strictly within this process; a file by the same name
	// can only be left by an earlier run whose clock was ahead, and then
	// the next ID differs in its random part too.
	for range 3 {
		id := s.ids.next(arrived)
		f, err := createExcl(s.bodyPath(id))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("spool: create message: %w", err)
		}
		bw := bufPool.Get().(*bufio.Writer)
		bw.Reset(f)
		return &Writer{s: s, id: id, f: f, bw: bw, arrived: arrived}, nil
	}
	return nil, errors.New("spool: create message: no unused queue id")
}

// ID returns the queue ID the message will have once committed, for logs.
func (w *Writer) ID() string { return w.id }

// Size returns the number of body bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Write appends p to the message body. After an error (a full disk, say)
// every later Write and Commit fails too; the caller should Abort.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, fmt.Errorf("spool: write message %s: %w", w.id, w.err)
	}
	if w.done {
		return 0, fmt.Errorf("spool: write message %s: %w", w.id, errWriterDone)
	}
	n, err := w.bw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = err
		return n, fmt.Errorf("spool: write message %s: %w", w.id, err)
	}
	return n, nil
}

// Commit queues the message with the envelope env: it fsyncs the body,
// writes and fsyncs the envelope, renames it into place and waits until the
// directory is fsynced (grouped with concurrent commits). Only after Commit
// returns nil may the SMTP server answer 250. Commit sets env.ID, env.Size,
// and env.Arrived when it was zero.
//
// On any error nothing is queued and the body is removed; the error wraps
// its cause, so errors.Is(err, syscall.ENOSPC) reports a full disk. The
// context is consulted before the envelope is written; after that Commit
// runs to the end, so that a message is never queued while Commit reports
// failure. Either way the Writer is finished: a later Abort does nothing.
func (w *Writer) Commit(ctx context.Context, env *Envelope) (string, error) {
	if w.done {
		return "", fmt.Errorf("spool: commit %s: %w", w.id, errWriterDone)
	}
	w.done = true
	if err := w.commit(ctx, env); err != nil {
		w.discard()
		return "", fmt.Errorf("spool: commit %s: %w", w.id, err)
	}
	return w.id, nil
}

func (w *Writer) commit(ctx context.Context, env *Envelope) error {
	s := w.s
	if w.err != nil {
		return w.err
	}
	if err := env.check(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	if !s.noSync {
		if err := w.f.Sync(); err != nil {
			return err
		}
	}
	if err := w.closeBody(); err != nil {
		return err
	}

	e := env.clone()
	e.ID, e.Size = w.id, w.n
	if e.Arrived.IsZero() {
		e.Arrived = w.arrived
	}
	e.normalize()
	data, err := marshalEnvelope(e)
	if err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.RUnlock()
	if err := w.publish(data); err != nil {
		return err
	}
	s.mu.Lock()
	s.index[w.id] = e
	s.mu.Unlock()
	env.ID, env.Size, env.Arrived = e.ID, e.Size, e.Arrived
	return nil
}

// publish writes the envelope data and makes the message part of the queue,
// durably. On error the envelope is gone again.
func (w *Writer) publish(data []byte) error {
	s := w.s
	tmp := s.tmpPath(w.id)
	if err := s.writeFile(tmp, data); err != nil {
		return err
	}
	final := s.envPath(w.id)
	if err := rename(tmp, final); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := s.syncQueue(); err != nil {
		// Whether the rename reached the disk is unknown; take the
		// message back so that it is not delivered after a 451.
		os.Remove(final)
		return err
	}
	return nil
}

// Abort discards the message: the client went away, the message is too
// big, a write failed. It removes the body file. Abort after Commit, or a
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

// discard closes and removes the body file.
func (w *Writer) discard() error {
	w.closeBody()
	if err := os.Remove(w.s.bodyPath(w.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// closeBody returns the buffer to the pool and closes the body file.
func (w *Writer) closeBody() error {
	if w.bw != nil {
		w.bw.Reset(nil)
		bufPool.Put(w.bw)
		w.bw = nil
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
