package sendmail

import (
	"bufio"
	"io"
)

// bodyReader streams the rest of stdin, ending at a lone "." line when
// stopAtDot. Errors reading stdin come back as *readError, so that they
// are not taken for network trouble.
type bodyReader struct {
	r         *bufio.Reader
	stopAtDot bool
	done      bool
	midLine   bool // the last piece did not end a line
	pending   []byte
}

type readError struct{ err error }

func (e *readError) Error() string { return "read stdin: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.done {
			return 0, io.EOF
		}
		line, err := b.r.ReadSlice('\n')
		if b.stopAtDot && !b.midLine {
			if t := string(line); t == ".\n" || t == ".\r\n" || (t == "." && err == io.EOF) {
				b.done = true
				return 0, io.EOF
			}
		}
		b.midLine = len(line) > 0 && line[len(line)-1] != '\n'
		b.pending = line // valid until the next ReadSlice, after it is used up
		switch {
		case err == io.EOF:
			b.done = true
		case err != nil && err != bufio.ErrBufferFull:
			return 0, &readError{err}
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}
