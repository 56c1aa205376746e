package upstream

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
)

// traceMode says what the session is doing, so the trace knows what to
// hide: the client's side of AUTH (passwords, tokens) and message bodies
// are never logged, the way mox keeps AUTH and DATA at separate trace
// levels.
type traceMode int

const (
	traceCommands traceMode = iota
	traceAuth               // client lines are credentials
	traceBody               // client lines are the message
)

// trace logs an SMTP dialogue line by line when a profile has debug on.
// It sits between go-smtp and TLS, so it sees plaintext and knows which
// side spoke.
type trace struct {
	logger *slog.Logger // nil: tracing off
	addr   string

	mu       sync.Mutex
	mode     traceMode
	client   []byte // partial lines
	server   []byte
	bodySize int64
}

func newTrace(logger *slog.Logger, addr string) *trace {
	return &trace{logger: logger, addr: addr}
}

func (t *trace) enabled() bool { return t != nil && t.logger != nil }

func (t *trace) setMode(m traceMode) {
	if !t.enabled() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endBody()
	t.mode = m
}

// endBody notes the size of a body in place of its text.
func (t *trace) endBody() {
	if t.mode == traceBody && t.bodySize > 0 {
		t.client = t.client[:0]
		t.logger.Info("smtp trace", "upstream", t.addr, "line", "C: <message body, "+formatSize(t.bodySize)+">")
		t.bodySize = 0
	}
}

// wrap returns conn with its plaintext traced.
func (t *trace) wrap(conn net.Conn) net.Conn {
	if !t.enabled() {
		return conn
	}
	return &tracedConn{Conn: conn, t: t}
}

type tracedConn struct {
	net.Conn
	t *trace
}

func (c *tracedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.received(p[:n])
	return n, err
}

func (c *tracedConn) Write(p []byte) (int, error) {
	c.t.sent(p)
	return c.Conn.Write(p)
}

func (t *trace) sent(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mode == traceBody {
		t.bodySize += int64(len(p))
		return
	}
	t.client = t.lines(t.client, p, func(line string) {
		if t.mode == traceAuth {
			line = redactAuth(line)
		}
		t.log("C: " + line)
	})
}

func (t *trace) received(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endBody()
	t.server = t.lines(t.server, p, func(line string) { t.log("S: " + line) })
}

// lines appends p to buf and calls emit for each complete line.
func (t *trace) lines(buf, p []byte, emit func(string)) []byte {
	buf = append(buf, p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		emit(strings.TrimRight(string(buf[:i]), "\r"))
		buf = buf[i+1:]
	}
	if len(buf) > 4096 { // no line of a dialogue worth logging is this long
		buf = buf[:0]
	}
	return buf
}

// note logs a line relay itself adds to the trace.
func (t *trace) note(dir, line string) {
	if !t.enabled() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log(dir + line)
}

func (t *trace) log(line string) {
	t.logger.Info("smtp trace", "upstream", t.addr, "line", line)
}

// redactAuth keeps the AUTH verb and mechanism and hides the rest.
func redactAuth(line string) string {
	f := strings.Fields(line)
	if len(f) >= 2 && strings.EqualFold(f[0], "AUTH") {
		if len(f) > 2 {
			return f[0] + " " + f[1] + " <redacted>"
		}
		return f[0] + " " + f[1]
	}
	if line == "" || line == "*" {
		return line
	}
	return "<redacted>"
}

// isReply reports whether p starts like an SMTP reply: three digits, then a
// space, a hyphen or the end of the line.
func isReply(p []byte) bool {
	if len(p) < 3 {
		return false
	}
	for _, c := range p[:3] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(p) == 3 || p[3] == ' ' || p[3] == '-' || p[3] == '\r' || p[3] == '\n'
}

func formatSize(n int64) string { return strconv.FormatInt(n, 10) + " bytes" }
