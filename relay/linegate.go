package relay

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"

	"github.com/emersion/go-smtp"
)

// maxCommandLine bounds a command line, its CRLF included. RFC 5321
// §4.5.3.1.4 says 512 octets; extensions make lines longer, and §4.5.3.1
// asks servers to be liberal: relay takes 2000, as go-smtp did.
const maxCommandLine = 2000

// gateBuffer is what the gate reads ahead of go-smtp.
const gateBuffer = 32 << 10

// Modes of a lineGate.
const (
	gateCommands = iota // hand on complete command lines only
	gateData            // a DATA message: read by relay (datareader.go); go-smtp gets its end only
)

// lineGate is relay's own reading of a client connection, in place of
// go-smtp's byte-by-byte line length check (its MaxLineLength is 0). It
// works a line at a time (bytes.IndexByte) and gives go-smtp:
//
//   - between commands, only complete lines, each at most maxCommandLine
//     octets (longer: smtp.ErrTooLongLine, which go-smtp answers with
//     "500 5.4.0" before it closes). A line cut by a read timeout or a
//     hang-up is dropped, never executed: go-smtp sees only the error and
//     answers 421 (or nothing, after a hang-up);
//   - the chunk of a "BDAT n" command as it is, n octets (RFC 3030 §2);
//   - after a 354, the message is relay's: the session reads it with
//     readMessage (datareader.go), bounded only by max_message_bytes
//     (RFC 2920 §3.1: a client sends no message before the 354), and
//     go-smtp then gets only ".\r\n", the end of a message, so that its
//     own octet-by-octet reader ends at once. If the session did not read
//     the message to its end, the gate skips the rest first;
//   - after a 334, the SASL response line as it is: not a command;
//   - never a STARTTLS command line, when the server has a certificate:
//     read returns it as a startTLSCommand, and the connection runs
//     STARTTLS itself (starttls.go);
//   - nothing of a connection in the clear that opens with a TLS record
//     (a client set up for implicit TLS on the plain listener): read
//     returns errTLSHello, then and ever after.
//
// The gate reads plaintext on every connection: on a TLS one (after
// STARTTLS, or on smtps_listen) relay's *tls.Conn lies beneath it.
type lineGate struct {
	mu     sync.Mutex
	buf    []byte // buf[r:w] is read from the client, not yet handed on
	r, w   int
	line   int   // octets of a checked complete line still to hand on
	next   int64 // octets of a BDAT chunk that follow that line
	raw    int64 // octets of a BDAT chunk still to hand on as they are
	mode   int
	err    error // the read error that ends the input, or ErrTooLongLine
	tlsCmd bool  // STARTTLS lines are the connection's (starttls.go), not go-smtp's
	sasl   bool  // after a 334: the next line is a SASL response, not a command
	clear  bool  // a connection in the clear whose first octet is still to come
	bareLF bool  // the last command line handed on ended in a bare LF

	msg     unstuffer // gateData: where the message is
	claimed bool      // gateData: the session reads the message (readMessage)
	endLeft int       // gateData: octets of endOfData still to hand go-smtp
}

// endOfData is all go-smtp reads of a DATA message.
const endOfData = ".\r\n"

// errTLSHello: a connection in the clear opened with a TLS handshake
// record (RFC 8446 §5.1: content type 22, which no SMTP command starts
// with), the ClientHello of a client set up for implicit TLS.
var errTLSHello = errors.New("relay: a TLS ClientHello on a connection in the clear")

// tlsHandshakeRecord is the content type of a TLS handshake record.
const tlsHandshakeRecord = 0x16

func newLineGate() *lineGate {
	return &lineGate{buf: make([]byte, gateBuffer)}
}

// read fills p from src, the client connection, as the mode allows.
func (g *lineGate) read(p []byte, src func([]byte) (int, error)) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if g.mode == gateData {
		return g.endData(p, src)
	}
	for {
		if n := g.handOn(p); n > 0 {
			return n, nil
		}
		if g.err == smtp.ErrTooLongLine || g.err == errTLSHello {
			return 0, g.err
		}
		if g.raw > 0 {
			return g.readThrough(p, src)
		}
		if err := g.check(); err != nil {
			return 0, err
		}
		if g.line > 0 {
			continue
		}
		if g.err != nil {
			// What is left is an incomplete line: dropped, never executed.
			g.r, g.w = 0, 0
			return 0, g.err
		}
		g.fill(src)
	}
}

// handOn copies to p what may be handed on from the buffer.
func (g *lineGate) handOn(p []byte) int {
	var n int
	switch {
	case g.raw > 0:
		n = copy(p, g.buf[g.r:g.r+int(min(int64(g.w-g.r), g.raw))])
		g.raw -= int64(n)
	case g.line > 0:
		n = copy(p, g.buf[g.r:g.r+g.line])
		if g.line -= n; g.line == 0 {
			g.raw, g.next = g.next, 0
		}
	}
	g.r += n
	return n
}

// readMessage gives the session the message of a DATA command, a run of
// octets at a time, unstuffed (unstuffer); io.EOF once its end was read.
// An error of the client's side ends it, a hang-up as
// io.ErrUnexpectedEOF.
func (g *lineGate) readMessage(p []byte, src func([]byte) (int, error)) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if g.msg.ended() {
			return 0, io.EOF
		}
		if g.mode != gateData {
			return 0, errOutsideMessage
		}
		if g.r < g.w {
			nin, nout := g.msg.unstuff(g.buf[g.r:g.w], p, false)
			g.r += nin
			if nout > 0 {
				return nout, nil
			}
			continue
		}
		if g.err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		} else if g.err != nil {
			return 0, g.err
		}
		g.fill(src)
	}
}

// endData is go-smtp's read of a DATA message: the rest of the message,
// if the session left some unread, is skipped, and go-smtp gets only
// endOfData. Then the gate reads commands again.
func (g *lineGate) endData(p []byte, src func([]byte) (int, error)) (int, error) {
	for !g.msg.ended() {
		if g.r < g.w {
			nin, _ := g.msg.unstuff(g.buf[g.r:g.w], nil, true)
			g.r += nin
			continue
		}
		if g.err != nil {
			return 0, g.err // go-smtp's reader makes io.EOF io.ErrUnexpectedEOF
		}
		g.fill(src)
	}
	n := copy(p, endOfData[len(endOfData)-g.endLeft:])
	if g.endLeft -= n; g.endLeft == 0 {
		g.mode = gateCommands
	}
	return n, nil
}

// claimMessage reports whether the session may read the message go-smtp
// has just answered DATA for with 354 (readMessage): once per message.
func (g *lineGate) claimMessage() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode != gateData || g.claimed {
		return false
	}
	g.claimed = true
	return true
}

// check looks for the next complete command line and vets it.
func (g *lineGate) check() error {
	if g.mode != gateCommands {
		return nil
	}
	if g.clear && g.w > g.r {
		g.clear = false
		if g.buf[g.r] == tlsHandshakeRecord {
			g.err = errTLSHello
			return g.err
		}
	}
	i := bytes.IndexByte(g.buf[g.r:g.w], '\n')
	if i < 0 {
		if g.w-g.r >= maxCommandLine {
			g.err = smtp.ErrTooLongLine
			return g.err
		}
		return nil
	}
	line := g.buf[g.r : g.r+i+1]
	if len(line) > maxCommandLine {
		g.err = smtp.ErrTooLongLine
		return g.err
	}
	g.line = len(line)
	g.bareLF = len(line) < 2 || line[len(line)-2] != '\r'
	if g.sasl {
		// A SASL response: neither a STARTTLS nor a BDAT chunk to go-smtp.
		g.sasl = false
		return nil
	}
	if cmd, ok := parseStartTLS(line); g.tlsCmd && ok {
		g.r, g.line = g.r+len(line), 0
		return cmd
	}
	g.next = bdatChunk(line)
	return nil
}

// bdatChunk is the size of the chunk that follows a command line, the
// way go-smtp parses "BDAT size [LAST]": it reads the chunk whenever the
// arguments parse, even to discard it.
func bdatChunk(line []byte) int64 {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) <= 5 || line[4] != ' ' || !bytes.EqualFold(line[:4], []byte("BDAT")) {
		return 0
	}
	args := bytes.Fields(line[5:])
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !bytes.EqualFold(args[1], []byte("LAST")) {
		return 0
	}
	n, err := strconv.ParseUint(string(args[0]), 10, 32)
	if err != nil {
		return 0
	}
	return int64(n)
}

// readThrough reads a BDAT chunk from the client straight into p. A
// read timeout comes out as errDataTimeout: go-smtp answers a chunk whose
// read failed with the error itself when it is an *smtp.SMTPError, and
// with a permanent "554 5.0.0 transaction failed" otherwise, on which a
// client would drop a message that may well go through later.
func (g *lineGate) readThrough(p []byte, src func([]byte) (int, error)) (int, error) {
	if g.err != nil {
		return 0, chunkError(g.err)
	}
	if int64(len(p)) > g.raw {
		p = p[:g.raw]
	}
	n, err := src(p)
	g.raw -= int64(n)
	if err != nil {
		g.err = err
	}
	return n, chunkError(err)
}

// chunkError is what go-smtp gets for a failed read of a BDAT chunk.
func chunkError(err error) error {
	if err != nil && isTimeout(err) {
		return errDataTimeout
	}
	return err
}

// fill reads more from the client into the buffer.
func (g *lineGate) fill(src func([]byte) (int, error)) {
	if g.r > 0 {
		g.w = copy(g.buf, g.buf[g.r:g.w])
		g.r = 0
	}
	n, err := src(g.buf[g.w:])
	g.w += n
	if err != nil {
		g.err = err
	} else if n == 0 && g.w == len(g.buf) {
		// Cannot happen: a full buffer holds a full line or is refused.
		g.err = smtp.ErrTooLongLine
	}
}

// replied tells the gate what the server answered: a 354 starts a
// message.
func (g *lineGate) replied(p []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.mode == gateCommands && bytes.HasPrefix(p, []byte("354")):
		g.mode = gateData
		// A DATA command ended by a bare LF: its message ends with ".\n"
		// too (unstuffer).
		g.msg, g.claimed, g.endLeft = unstuffer{lf: g.bareLF}, false, len(endOfData)
	case g.mode == gateCommands && bytes.HasPrefix(p, []byte("334 ")):
		g.sasl = true // RFC 4954 §4: the client answers with one line
	}
}

// nextCommand tells the gate that go-smtp reads its next command: a
// message is over.
func (g *lineGate) nextCommand() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode == gateData {
		// A read error ended the message before endOfData: go-smtp has
		// answered, and its next read fails with the same error.
		g.mode = gateCommands
	}
}
