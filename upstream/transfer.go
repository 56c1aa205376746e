package upstream

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// chunkSize is the size of a BDAT chunk. With PIPELINING one chunk is on
// its way while the reply to the one before is read.
const chunkSize = 64 << 10

var (
	copyBuffers  = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	chunkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}
)

// copyBody copies the message into w through a pooled buffer.
func copyBody(w io.Writer, body io.Reader) error {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	// Hide a WriterTo (an *os.File's allocates a buffer of its own).
	_, err := io.CopyBuffer(w, struct{ io.Reader }{body}, *buf)
	return err
}

// errorSide tells a failure to read the message (local) from a failure
// to write it (the network).
type errorSide struct{ err error }

type sideWriter struct {
	w   io.Writer
	err *errorSide
}

func (s sideWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err.err == nil {
		s.err.err = err
	}
	return n, err
}

// sendDATA streams the message after a 354 (RFC 5321 §4.1.1.4): lines
// folded at 998 octets, dot-stuffed, then the final ".", and reads the
// reply.
func (c *Conn) sendDATA(ctx context.Context, body io.Reader) (string, error) {
	var wrote errorSide
	dw := newDotWriter(sideWriter{c.wire.w, &wrote})
	err := copyBody(&foldWriter{w: dw}, body)
	c.wire.trace.bodySent(int(dw.n))
	if err != nil {
		return "", c.bodyFailed(ctx, wrote.err, err)
	}
	if err := dw.close(); err != nil {
		return "", c.fail(ctx, StepData, err)
	}
	if err := c.wire.flush(); err != nil {
		return "", c.fail(ctx, StepData, err)
	}
	return c.final(ctx)
}

// final reads the reply to the end of a message.
func (c *Conn) final(ctx context.Context) (string, error) {
	rep, err := c.wire.read()
	if err == nil {
		err = rep.expect(250)
	}
	if err != nil {
		return "", c.fail(ctx, StepData, err)
	}
	c.dirty = false
	return rep.status(), nil
}

// bodyFailed reports a message that could not be sent whole: the
// connection is cut off mid-transaction either way.
func (c *Conn) bodyFailed(ctx context.Context, writeErr, err error) error {
	if writeErr != nil {
		return c.fail(ctx, StepData, writeErr)
	}
	c.broken = true
	return classify(c.sender.addr, StepData, fmt.Errorf("reading the message: %w", err))
}

// sendBDAT sends the message in BDAT chunks (RFC 3030 §2): as it is, no
// dot-stuffing, lines folded at 998 octets; the last chunk is "BDAT n
// LAST". With PIPELINING (RFC 3030 §4.2) the next chunk goes out before
// the reply to the previous one is read.
func (c *Conn) sendBDAT(ctx context.Context, body io.Reader) (string, error) {
	buf := chunkBuffers.Get().(*[]byte)
	defer chunkBuffers.Put(buf)
	ch := &chunker{c: c, ctx: ctx, buf: (*buf)[:0], pipelined: c.ext.has("PIPELINING")}
	c.dirty = true
	if err := copyBody(&foldWriter{w: ch}, body); err != nil {
		if ch.err != nil {
			return "", ch.err
		}
		c.broken = true
		return "", classify(c.sender.addr, StepData, fmt.Errorf("reading the message: %w", err))
	}
	if err := ch.emit(true); err != nil {
		return "", err
	}
	return ch.last, nil
}

// chunker collects the message into chunks and sends each with its BDAT
// command.
type chunker struct {
	c         *Conn
	ctx       context.Context
	buf       []byte
	pipelined bool
	pending   int    // chunks whose reply is not read yet
	err       error  // the first failure: a refused chunk or the network
	last      string // the reply text to the last chunk
}

func (ch *chunker) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if ch.err != nil {
			return total - len(p), ch.err
		}
		n := copy(ch.buf[len(ch.buf):cap(ch.buf)], p)
		ch.buf = ch.buf[:len(ch.buf)+n]
		p = p[n:]
		if len(ch.buf) == cap(ch.buf) {
			ch.emit(false)
		}
	}
	return total, ch.err
}

// emit sends the chunk collected so far and reads replies: all of them
// after the last chunk or without PIPELINING, else all but one.
func (ch *chunker) emit(last bool) error {
	w := ch.c.wire
	line := "BDAT " + strconv.Itoa(len(ch.buf))
	if last {
		line += " LAST"
	}
	w.send(line)
	if _, err := w.w.Write(ch.buf); err != nil {
		ch.err = ch.c.fail(ch.ctx, StepData, err)
		return ch.err
	}
	w.trace.bodySent(len(ch.buf))
	ch.buf = ch.buf[:0]
	ch.pending++
	if err := w.flush(); err != nil {
		ch.err = ch.c.fail(ch.ctx, StepData, err)
		return ch.err
	}
	keep := 1
	if last || !ch.pipelined {
		keep = 0
	}
	for ch.pending > keep {
		ch.pending--
		if last && ch.pending == 0 && ch.err == nil {
			ch.last, ch.err = ch.c.final(ch.ctx)
			break
		}
		rep, err := w.read()
		if err == nil && ch.err == nil {
			err = rep.expect(250)
		}
		if err != nil {
			if e := ch.c.fail(ch.ctx, StepData, err); ch.err == nil {
				ch.err = e
			}
			if ch.c.broken {
				break
			}
		}
	}
	if ch.err != nil && ch.pending > 0 && !ch.c.broken {
		// Read what is still due, so the next command's reply is its own.
		for ; ch.pending > 0; ch.pending-- {
			if _, err := w.read(); err != nil {
				ch.c.fail(ch.ctx, StepData, err)
				break
			}
		}
	}
	return ch.err
}
