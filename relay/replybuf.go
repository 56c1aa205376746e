package relay

import (
	"bytes"
	"sync"
)

// replyBuffer gathers what go-smtp writes to a client, so that the replies
// to a group of pipelined commands (RFC 2920 §3.1), or the lines of a
// multi-line reply such as EHLO's, go out in one write instead of one
// write each: go-smtp's textproto writer flushes after every line. It is
// flushed before every read from the client (deadlineConn.readClient, so
// before any read that may block, as RFC 2920 §3.1 asks of a server), when
// the session logs out and when the connection closes (go-smtp logs out
// first, and in direct mode Logout waits for the upstream), when it holds
// replyFlushAt octets or more, and at once for a 354, so that the client
// starts sending the message while Data gets ready. A failed write is returned by every later write and
// flush, so the read that flushed fails with it and go-smtp ends the
// connection; one that timed out has expired the connection (limits.go).
//
// The connection's write deadline is the one go-smtp set before its last
// reply (WriteTimeout); a reply waits in the buffer only while relay
// handles commands the client has already sent.
//
// On a TLS connection the buffer lies above relay's *tls.Conn: a group of
// replies goes out in one TLS record.
type replyBuffer struct {
	mu  sync.Mutex
	buf []byte
	err error
}

// replyFlushAt is the size at which a write goes out at once: larger than
// any group of replies, as large as a TLS record.
const replyFlushAt = 16 << 10

// write buffers p, and writes the buffer out with w if it is full or p
// is a 354.
func (b *replyBuffer) write(p []byte, w func([]byte) (int, error)) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= replyFlushAt || bytes.HasPrefix(p, []byte("354 ")) {
		if err := b.flushLocked(w); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush writes out what is buffered, with w.
func (b *replyBuffer) flush(w func([]byte) (int, error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked(w)
}

// flushOnClose is flush for Close, which may come from another goroutine
// (a server shutdown) while a flush is blocked on a client that does not
// read: then closing the connection is what ends that flush, and Close
// does not wait for it.
func (b *replyBuffer) flushOnClose(w func([]byte) (int, error)) error {
	if !b.mu.TryLock() {
		return nil
	}
	defer b.mu.Unlock()
	return b.flushLocked(w)
}

func (b *replyBuffer) flushLocked(w func([]byte) (int, error)) error {
	if b.err != nil {
		return b.err
	}
	if len(b.buf) == 0 {
		return nil
	}
	// The error goes back unwrapped: go-smtp, which gets it from a read,
	// tells a timeout (net.Error) from a closed connection (net.ErrClosed)
	// by its type.
	_, b.err = w(b.buf)
	b.buf = b.buf[:0]
	return b.err
}
