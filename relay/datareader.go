package relay

import (
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-smtp"
)

// relay reads the message of a DATA command itself, from the line gate's
// buffer, instead of through go-smtp's dataReader, which takes the
// message an octet at a time (bufio.Reader.ReadByte and a state step per
// octet: 40 % of relay's CPU for 1 MB messages). The gate still hands
// go-smtp the end of the message, ".\r\n" alone, so that go-smtp's reader
// ends at once and go-smtp answers with what Data returned (linegate.go).

// States of an unstuffer: those of go-smtp's dataReader (data.go, taken
// from net/textproto), so that relay cuts and unstuffs a message exactly
// as go-smtp would.
const (
	dotBeginLine = iota // at the start of a line (after CRLF, or the first octet)
	dotDot              // a "." at the start of a line, dropped
	dotDotCR            // ".\r" at the start of a line, both dropped
	dotCR               // a CR, perhaps the end of a line
	dotData             // inside a line
	dotEnd              // the ".\r\n" that ends the message was read
)

// unstuffer undoes the dot-stuffing of a DATA message and finds its end,
// RFC 5321 §4.5.2: a line that starts with "." loses that "."; the line
// ".\r\n" ends the message. Only CRLF ends a line: a "." after a bare LF
// or a bare CR is data, so "\n.\n", "\r.\r" and "\n.\r\n" never end a
// message (SMTP smuggling, RFC 5321 §2.3.8). It keeps go-smtp's quirks
// too, so that the same octets make the same message: ".\r" followed by
// anything but "\n" drops the CR, and a CR right after a CR, or after
// such a ".\r", does not start the search for CRLF again.
//
// It works a run of octets at a time (bytes.IndexByte for the next CR);
// only the octets around a line start go through the state machine.
//
// With lf, LF alone ends a line too, and ".\n" ends the message as
// ".\r\n" does: the message of a client that ended its DATA command
// with a bare LF, which writes every line so (a script's printf piped into
// nc, some old devices), and would otherwise wait for a CRLF.CRLF it never
// sends. A client whose DATA line ended in CRLF, every MTA among them,
// never gets this reading, so "\n.\n" cannot smuggle a second message
// through one.
type unstuffer struct {
	state uint8
	lf    bool
}

// ended reports whether the end of the message was read.
func (u *unstuffer) ended() bool { return u.state == dotEnd }

// unstuff reads the message from in and writes its octets to out, until
// in is used up, out is full or the message ends. It returns how much of
// in it consumed and how much of out it filled. With discard, out is not
// written and not bounded: the message is only skipped to its end.
func (u *unstuffer) unstuff(in, out []byte, discard bool) (nin, nout int) {
	for nin < len(in) && u.state != dotEnd && (discard || nout < len(out)) {
		if u.state == dotData {
			run := in[nin:]
			if !discard {
				run = run[:min(len(run), len(out)-nout)]
			}
			k := len(run)
			if u.lf {
				if i := bytes.IndexByte(run, '\n'); i >= 0 {
					k = i + 1
					u.state = dotBeginLine
				}
			} else if i := bytes.IndexByte(run, '\r'); i >= 0 {
				k = i + 1
				u.state = dotCR
			}
			if !discard {
				copy(out[nout:], run[:k])
			}
			nin += k
			nout += k
			continue
		}
		c := in[nin]
		nin++
		switch u.state {
		case dotBeginLine:
			switch {
			case c == '.':
				u.state = dotDot
				continue
			case c == '\r' && !u.lf:
				u.state = dotCR
			case c == '\n' && u.lf:
				// an empty line: the next one begins
			default:
				u.state = dotData
			}
		case dotDot:
			switch {
			case c == '\r':
				u.state = dotDotCR
				continue
			case c == '\n' && u.lf:
				u.state = dotEnd
				continue
			}
			u.state = dotData
		case dotDotCR:
			if c == '\n' {
				u.state = dotEnd
				continue
			}
			u.state = dotData
		case dotCR:
			if c == '\n' {
				u.state = dotBeginLine
			} else {
				u.state = dotData
			}
		}
		if !discard {
			out[nout] = c
		}
		nout++
	}
	return nin, nout
}

// errOutsideMessage: a messageReader read after its message was handed
// to go-smtp. Cannot happen: Data reads its message before it returns.
var errOutsideMessage = errors.New("relay: message reader used after its message")

// messageReader is the message of one DATA command, read from the line
// gate: the octets go-smtp's dataReader would give, with its limit. It
// ends with io.EOF after the ".\r\n" line, with io.ErrUnexpectedEOF if
// the client hangs up first, with the read error (a timeout) if reading
// fails, and with smtp.ErrDataTooLarge when the message goes on past its
// max-th octet. A message of exactly max_message_bytes octets is read
// whole, as SIZE (RFC 1870 §4: "the maximum fixed message size ... that
// the server is willing to accept") and go-smtp's BDAT accept it; go-smtp's
// own DATA reader refuses it. Every error is returned again by later reads.
type messageReader struct {
	gate    *lineGate
	src     func([]byte) (int, error)
	limited bool
	left    int64 // octets that may still be given, when limited
	err     error
}

func (m *messageReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if m.limited {
		if m.left <= 0 {
			// Read one octet more: none (io.EOF) if the message ends at
			// max octets; any is past the limit, and the rest of the
			// message is skipped when go-smtp ends it (lineGate.endData).
			var probe [1]byte
			n, err := m.gate.readMessage(probe[:], m.src)
			if n > 0 {
				err = smtp.ErrDataTooLarge
			}
			m.err = err
			return 0, err
		}
		p = p[:min(int64(len(p)), m.left)]
	}
	n, err := m.gate.readMessage(p, m.src)
	m.left -= int64(n)
	if err != nil {
		m.err = err
	}
	return n, err
}

// messageReader gives the message of the DATA command go-smtp has just
// answered with 354, read by relay (nil: go-smtp's reader r must be
// used): each DATA message, in the clear or inside TLS (the gate lies above
// relay's TLS). A BDAT message, which go-smtp feeds through an io.Pipe,
// comes from go-smtp. max is max_message_bytes as go-smtp holds it.
func (c *deadlineConn) messageReader(r io.Reader, max int64) io.Reader {
	if _, bdat := r.(*io.PipeReader); bdat || !c.gate.claimMessage() {
		return nil
	}
	return &messageReader{gate: c.gate, src: c.readClient, limited: max > 0, left: max}
}

// messageReader is the reader of the message Data was called for:
// relay's own for DATA, else (BDAT) go-smtp's r.
func (s *session) messageReader(r io.Reader) io.Reader {
	if s.dc != nil {
		if m := s.dc.messageReader(r, s.maxMessage); m != nil {
			return m
		}
	}
	return r
}
