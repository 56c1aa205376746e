package sendmail

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// dataError is a problem with the message itself.
type dataError struct{ msg string }

func (e dataError) Error() string { return e.msg }

// header is a message's header section as read from stdin, field by
// field, each with its original bytes.
type header struct {
	fields []field
	// first is the first line of the body when the input had no empty line
	// between header and body (it did not look like a header field).
	first []byte
	end   bool // the input ended within the header section
}

type field struct {
	name string // as written
	raw  []byte // the whole field, folded lines and line endings included
}

// readHeader reads the header section: up to the empty line, the first
// line that is not a header field, or the end of input. A leading mbox
// "From " line is dropped, as sendmail does. With stopAtDot, a line with a
// lone "." ends the input.
func readHeader(r *bufio.Reader, stopAtDot bool) (*header, error) {
	h := &header{}
	total := 0
	for lineNo := 0; ; lineNo++ {
		line, err := readLine(r, maxHeaderBytes-total)
		total += len(line)
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(line) == 0 && err == io.EOF {
			h.end = true
			return h, nil
		}
		text := strings.TrimRight(string(line), "\r\n")
		switch {
		case stopAtDot && text == ".":
			h.end = true
			return h, nil
		case text == "":
			if err == io.EOF {
				h.end = true
			}
			return h, nil
		case lineNo == 0 && strings.HasPrefix(text, "From "):
			// mbox separator
		case (line[0] == ' ' || line[0] == '\t') && len(h.fields) > 0:
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw, line...)
		case isFieldLine(text):
			name, _, _ := strings.Cut(text, ":")
			h.fields = append(h.fields, field{name: name, raw: append([]byte(nil), line...)})
		default:
			h.first = append([]byte(nil), line...)
			return h, nil
		}
		if err == io.EOF {
			h.end = true
			return h, nil
		}
	}
}

// readLine reads one line with its ending, at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, dataError{fmt.Sprintf("the header section is larger than %d bytes", maxHeaderBytes)}
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// isFieldLine: RFC 5322 §2.2: a field name is printable ASCII except the
// colon, followed by a colon.
func isFieldLine(s string) bool {
	name, _, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 33 || name[i] > 126 {
			return false
		}
	}
	return true
}

func (h *header) has(name string) bool {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// value is a field's body, unfolded.
func (f field) value() string {
	_, v, _ := strings.Cut(string(f.raw), ":")
	return strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(v))
}

// recipients are the addresses of To, Cc and Bcc, or of Resent-To,
// Resent-Cc and Resent-Bcc when the message has been resent (RFC 5322
// §3.6.6), as sendmail -t takes them.
func (h *header) recipients(host string) ([]string, error) {
	names := []string{"To", "Cc", "Bcc"}
	for _, n := range []string{"Resent-To", "Resent-Cc", "Resent-Bcc"} {
		if h.has(n) {
			names = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}
			break
		}
	}
	var out []string
	for _, f := range h.fields {
		for _, n := range names {
			if strings.EqualFold(f.name, n) {
				list, err := parseAddrList(f.value(), host)
				if err != nil {
					return nil, dataError{fmt.Sprintf("%s header: %v", f.name, err)}
				}
				out = append(out, list...)
			}
		}
	}
	return out, nil
}

// complete removes Bcc and Resent-Bcc, which must not reach the
// recipients, and adds From, Date and Message-ID when they are missing,
// as sendmail does for a local submission.
func (h *header) complete(from *mail.Address, host string, now time.Time) {
	kept := h.fields[:0]
	for _, f := range h.fields {
		if !strings.EqualFold(f.name, "Bcc") && !strings.EqualFold(f.name, "Resent-Bcc") {
			kept = append(kept, f)
		}
	}
	h.fields = kept
	add := func(name, value string) {
		if !h.has(name) {
			h.fields = append(h.fields, field{name: name, raw: []byte(name + ": " + value + "\r\n")})
		}
	}
	add("From", from.String())
	add("Date", now.Format(time.RFC1123Z))
	var id [12]byte
	rand.Read(id[:])
	add("Message-ID", fmt.Sprintf("<%d.%s@%s>", now.Unix(), hex.EncodeToString(id[:]), host))
}

// bytes is the header section as it is sent, with the empty line that
// ends it.
func (h *header) bytes() []byte {
	var b []byte
	for _, f := range h.fields {
		b = append(b, f.raw...)
		if f.raw[len(f.raw)-1] != '\n' {
			b = append(b, '\r', '\n') // the input ended inside this field
		}
	}
	b = append(b, '\r', '\n')
	return append(b, h.first...)
}
