package upstream

import (
	"bufio"
	"net"
	"strconv"
	"strings"
)

// wire is the protocol layer of an upstream connection: buffered reads of
// replies and buffered writes of commands, so that several commands go
// out in one write when the server offers PIPELINING (RFC 2920).
type wire struct {
	conn  net.Conn // plain or TLS; every read and write bounded by smtp_timeout
	r     *bufio.Reader
	w     *bufio.Writer
	trace *trace
}

// wireBuffer is the size of a wire's read and write buffers: a pipelined
// group of commands fits, and a message goes out in writes this large.
const wireBuffer = 32 << 10

func newWire(conn net.Conn, tr *trace) *wire {
	return &wire{conn: conn, r: bufio.NewReaderSize(conn, 4096), w: bufio.NewWriterSize(conn, wireBuffer), trace: tr}
}

// send buffers one command line; flush sends it.
func (w *wire) send(line string) {
	w.trace.client(line)
	w.w.WriteString(line)
	w.w.WriteString("\r\n")
}

func (w *wire) flush() error { return w.w.Flush() }

// read reads one reply.
func (w *wire) read() (*reply, error) { return readReply(w.r, w.trace) }

// cmd sends one command and reads its reply.
func (w *wire) cmd(line string) (*reply, error) {
	w.send(line)
	if err := w.flush(); err != nil {
		return nil, err
	}
	return w.read()
}

// extensions are the EHLO keywords a server offers (RFC 5321 §4.1.1.1),
// upper case, each with its parameters.
type extensions map[string]string

func parseEHLO(rep *reply) extensions {
	ext := extensions{}
	for _, l := range rep.lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext
}

func (e extensions) has(k string) bool { _, ok := e[k]; return ok }

// sizeLimit is the server's SIZE (RFC 1870 §4), 0 when it gave none.
func (e extensions) sizeLimit() int64 {
	n, _ := strconv.ParseInt(e["SIZE"], 10, 64)
	return max(n, 0)
}
