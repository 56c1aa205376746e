package upstream

import (
	"bytes"
	"io"
)

// maxLine is the longest text line relay sends upstream, without its CRLF
// (RFC 5321 §4.5.3.1.6: 1000 octets with the CRLF).
const maxLine = 998

// foldWriter breaks lines longer than maxLine octets by inserting
// <CR><LF><SPACE>, as Postfix does (smtp_line_length_limit = 998): in a
// header the break is a folding point, in a body it is a visible space,
// and no octet is lost. It works a line at a time (bytes.IndexByte).
type foldWriter struct {
	w   io.Writer
	col int  // octets of the current line so far
	cr  bool // the last octet written was a CR, not counted in col yet
}

var foldBreak = []byte("\r\n ")

func (f *foldWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i+1]
		}
		if err := f.writeLine(seg, i >= 0); err != nil {
			return total - len(p), err
		}
		p = p[len(seg):]
	}
	return total, nil
}

// writeLine writes part of one line; ends says seg closes the line.
func (f *foldWriter) writeLine(seg []byte, ends bool) error {
	if f.cr && seg[0] != '\n' {
		f.col++ // a bare CR is part of the line
	}
	f.cr = false
	for {
		content := len(seg)
		if ends {
			content-- // the LF
		}
		if content > 0 && seg[content-1] == '\r' {
			content-- // the CR of a CRLF (maybe split across writes) does not count
		}
		room := maxLine - f.col
		if content <= room {
			break
		}
		if room > 0 {
			if _, err := f.w.Write(seg[:room]); err != nil {
				return err
			}
		}
		if _, err := f.w.Write(foldBreak); err != nil {
			return err
		}
		seg = seg[max(room, 0):]
		f.col = 1
	}
	if _, err := f.w.Write(seg); err != nil {
		return err
	}
	switch {
	case ends:
		f.col = 0
	case seg[len(seg)-1] == '\r':
		f.col += len(seg) - 1
		f.cr = true
	default:
		f.col += len(seg)
	}
	return nil
}

// dotWriter dot-stuffs a message for DATA (RFC 5321 §4.5.2): a line that
// starts with a period gets another one. It looks for "\n." with
// bytes.Index and copies everything between in one write.
type dotWriter struct {
	w   io.Writer
	bol bool // at the beginning of a line
	n   int64
}

func newDotWriter(w io.Writer) *dotWriter { return &dotWriter{w: w, bol: true} }

var (
	lfDot = []byte("\n.")
	dot   = []byte{'.'}
)

func (d *dotWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if _, err := d.w.Write(dot); err != nil {
				return total - len(p), err
			}
		}
		end := len(p)
		if i := bytes.Index(p, lfDot); i >= 0 {
			end = i + 1 // through the LF; the period starts the next round
		}
		if _, err := d.w.Write(p[:end]); err != nil {
			return total - len(p), err
		}
		d.bol = p[end-1] == '\n'
		d.n += int64(end)
		p = p[end:]
	}
	return total, nil
}

// close ends the message: a CRLF if its last line lacks one, then the
// terminating "." line.
func (d *dotWriter) close() error {
	end := ".\r\n"
	if !d.bol {
		end = "\r\n.\r\n"
	}
	_, err := io.WriteString(d.w, end)
	return err
}
