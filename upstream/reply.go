package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// Bounds on what relay reads of one reply. RFC 5321 §4.5.3.1.5 allows
// 512 octets per reply line; servers send longer ones (XOAUTH2 error
// challenges, long EHLO lists), so relay is liberal, but never unbounded.
const (
	maxReplyLine  = 16 << 10
	maxReplyLines = 256
)

// reply is one SMTP reply (RFC 5321 §4.2): its code, the enhanced status
// code of its first line (RFC 2034 §4, RFC 3463), if any, and its text
// lines with the code and the enhanced code taken off.
type reply struct {
	code     int
	enhanced smtp.EnhancedCode
	lines    []string
}

// errMalformedReply is a reply that is not "ddd text" (RFC 5321 §4.2).
var errMalformedReply = errors.New("malformed reply")

// readReply reads one reply, single- or multi-line, and notes each line
// in the trace.
func readReply(r *bufio.Reader, tr *trace) (*reply, error) {
	rep := &reply{enhanced: smtp.NoEnhancedCode}
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		tr.server(line)
		code, more, text, err := parseReplyLine(line)
		if err != nil {
			return nil, err
		}
		if len(rep.lines) == 0 {
			rep.code = code
		} else if code != rep.code {
			// RFC 5321 §4.2.1: every line of a reply has the same code.
			return nil, fmt.Errorf("%w: code %d inside a %d reply", errMalformedReply, code, rep.code)
		}
		ec, rest := splitEnhanced(code, text)
		if len(rep.lines) == 0 {
			rep.enhanced = ec
		}
		rep.lines = append(rep.lines, rest)
		if !more {
			return rep, nil
		}
		if len(rep.lines) >= maxReplyLines {
			return nil, fmt.Errorf("%w: more than %d lines", errMalformedReply, maxReplyLines)
		}
	}
}

// readLine reads one line without its CRLF (or bare LF), refusing lines
// longer than maxReplyLine.
func readLine(r *bufio.Reader) (string, error) {
	var long []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(long)+len(frag) > maxReplyLine+2 {
			return "", fmt.Errorf("%w: a line longer than %d octets", errMalformedReply, maxReplyLine)
		}
		if err == bufio.ErrBufferFull {
			long = append(long, frag...)
			continue
		}
		if err != nil {
			return "", err
		}
		if long != nil {
			frag = append(long, frag...)
		}
		frag = frag[:len(frag)-1]
		if n := len(frag); n > 0 && frag[n-1] == '\r' {
			frag = frag[:n-1]
		}
		return string(frag), nil
	}
}

// parseReplyLine splits "ddd text", "ddd-text" or "ddd" into the code,
// whether more lines follow, and the text. The code must be 2xx to 5xx
// (RFC 5321 §4.2.1).
func parseReplyLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
		return 0, false, "", fmt.Errorf("%w: %q", errMalformedReply, clip(line))
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
		return code, false, line[4:], nil
	case '-':
		return code, true, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("%w: %q", errMalformedReply, clip(line))
}

// splitEnhanced takes an enhanced status code "c.sss.ddd " off the front
// of text when its class matches the reply code's first digit (RFC 2034
// §4: the class "MUST" match).
func splitEnhanced(code int, text string) (smtp.EnhancedCode, string) {
	word, rest, _ := strings.Cut(text, " ")
	var ec smtp.EnhancedCode
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return smtp.NoEnhancedCode, text
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return smtp.NoEnhancedCode, text
		}
		n := 0
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return smtp.NoEnhancedCode, text
			}
			n = n*10 + int(p[j]-'0')
		}
		ec[i] = n
	}
	if ec[0] != code/100 || len(parts[0]) != 1 {
		return smtp.NoEnhancedCode, text
	}
	return ec, rest
}

// text is the reply's text, one line per line of the reply.
func (r *reply) text() string { return strings.Join(r.lines, "\n") }

// status is the reply as the server wrote it, less the code: the
// enhanced code, if any, then the text ("2.0.0 OK: queued as 4F2").
func (r *reply) status() string {
	if r.enhanced == smtp.NoEnhancedCode {
		return r.text()
	}
	return fmt.Sprintf("%d.%d.%d %s", r.enhanced[0], r.enhanced[1], r.enhanced[2], r.text())
}

// err is the reply as an error.
func (r *reply) err() *smtp.SMTPError {
	return &smtp.SMTPError{Code: r.code, EnhancedCode: r.enhanced, Message: r.text()}
}

// expect returns nil when the reply has the wanted code, else the reply
// as an error.
func (r *reply) expect(code int) error {
	if r.code == code {
		return nil
	}
	return r.err()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
