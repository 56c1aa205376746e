package relay

import (
	"bytes"
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
	pending []byte // output not yet returned, in out
	out     []byte // for reads into a p too small to convert into
	cr      bool   // the last input byte was a CR
	err     error

	// Normalized counts line endings that were not CRLF.
	Normalized int
}

// crlfBufSize is the most crlfReader reads at once.
const crlfBufSize = 16 << 10

func newCRLFReader(r io.Reader) *crlfReader {
	return &crlfReader{r: r}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		// Converted, n input bytes become at most 2n (every one a bare
		// line ending), and one more at EOF after a CR: with room for that
		// in p, convert straight into it.
		n := min(crlfBufSize, (len(p)-1)/2)
		direct := n > 0
		if !direct {
			n = crlfBufSize
		}
		if len(c.buf) < n {
			c.buf = make([]byte, max(n, min(crlfBufSize, 4<<10)))
		}
		k, err := c.r.Read(c.buf[:n])
		var out []byte
		if direct {
			out = c.convert(c.buf[:k], p[:0:len(p)])
		} else {
			out = c.convert(c.buf[:k], c.out[:0])
			c.out = out
		}
		if err != nil {
			if err == io.EOF && c.cr {
				out = append(out, '\n')
				c.cr = false
				c.Normalized++
			}
			c.err = err
		}
		if direct {
			if len(out) > 0 {
				return len(out), nil
			}
			continue // c.err, if any, is returned above
		}
		c.out = out
		c.pending = out
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// convert appends in, with its line endings made CRLF, to out. It scans
// with bytes.IndexByte, each byte once or twice, whatever the input.
func (c *crlfReader) convert(in, out []byte) []byte {
	for len(in) > 0 {
		if c.cr {
			// The byte before in was a CR.
			c.cr = false
			if in[0] == '\n' {
				out = append(out, '\n')
				in = in[1:]
				continue
			}
			out = append(out, '\n') // after a bare CR
			c.Normalized++
		}
		lf := bytes.IndexByte(in, '\n')
		if lf < 0 {
			lf = len(in)
		}
		// seg, up to the next LF, may hold CRs: bare ones, and one at its
		// end that the LF (or the next input) may follow.
		seg := in[:lf]
		crEnd := false
		for {
			j := bytes.IndexByte(seg, '\r')
			if j < 0 {
				out = append(out, seg...)
				break
			}
			out = append(out, seg[:j+1]...)
			seg = seg[j+1:]
			if len(seg) == 0 {
				crEnd = true
				break
			}
			out = append(out, '\n') // a bare CR
			c.Normalized++
		}
		if lf == len(in) {
			c.cr = crEnd
			return out
		}
		if !crEnd {
			out = append(out, '\r') // a bare LF
			c.Normalized++
		}
		out = append(out, '\n')
		in = in[lf+1:]
	}
	return out
}
