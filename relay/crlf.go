package relay

import (
	"io"
)

// crlfReader turns every line ending into CRLF: a bare LF or a bare CR
// becomes CRLF. What relay stores and sends upstream therefore has one
// kind of line ending, so a <LF>.<LF> or <CR>.<CR> that a client slipped
// into DATA cannot end a message at a more lenient upstream (SMTP
// smuggling, RFC 5321 §2.3.8). go-smtp's reader has already ended DATA at
// the first <CRLF>.<CRLF> and removed dot-stuffing.
type crlfReader struct {
	r       io.Reader
	buf     []byte
	out     []byte // backing store of pending
	pending []byte // output not yet returned
	cr      bool   // the last input byte was a CR
	err     error

	// Normalized counts line endings that were not CRLF.
	Normalized int
}

func newCRLFReader(r io.Reader) *crlfReader {
	return &crlfReader{r: r, buf: make([]byte, 16<<10)}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.buf)
		c.out = c.convert(c.buf[:n], c.out[:0])
		c.pending = c.out
		if err != nil {
			if err == io.EOF && c.cr {
				c.pending = append(c.pending, '\n')
				c.cr = false
				c.Normalized++
			}
			c.err = err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// convert appends in, with its line endings made CRLF, to out.
func (c *crlfReader) convert(in, out []byte) []byte {
	for _, b := range in {
		switch {
		case b == '\n':
			if !c.cr {
				out = append(out, '\r')
				c.Normalized++
			}
			out = append(out, '\n')
			c.cr = false
		case c.cr:
			// a CR not followed by LF
			out = append(out, '\n')
			c.Normalized++
			c.cr = b == '\r'
			out = append(out, b)
		default:
			c.cr = b == '\r'
			out = append(out, b)
		}
	}
	return out
}
