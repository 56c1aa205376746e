package upstream

import (
	"log/slog"
	"strconv"
	"strings"
)

// trace logs an SMTP dialogue line by line when a profile has debug on.
// The client calls it for each line it sends and receives, so it knows
// what a line is: the client's side of AUTH (passwords, tokens) and
// message bodies are never logged, the way mox keeps AUTH and DATA at
// separate trace levels. A nil *trace logs nothing.
type trace struct {
	logger *slog.Logger
	addr   string
	auth   bool  // client lines are credentials
	body   int64 // body octets sent since the last line logged
}

func newTrace(logger *slog.Logger, addr string) *trace {
	return &trace{logger: logger, addr: addr}
}

// setAuth marks the client lines that follow as credentials, or not.
func (t *trace) setAuth(on bool) {
	if t != nil {
		t.auth = on
	}
}

// client logs a command line the client sends.
func (t *trace) client(line string) {
	if t == nil {
		return
	}
	t.endBody()
	if t.auth {
		line = redactAuth(line)
	}
	t.log("C: " + line)
}

// bodySent counts message octets sent, logged as their size only.
func (t *trace) bodySent(n int) {
	if t != nil {
		t.body += int64(n)
	}
}

// server logs a reply line.
func (t *trace) server(line string) {
	if t == nil {
		return
	}
	t.endBody()
	t.log("S: " + line)
}

// note logs a line relay itself adds to the trace.
func (t *trace) note(line string) {
	if t != nil {
		t.log(line)
	}
}

func (t *trace) endBody() {
	if t.body > 0 {
		t.log("C: <message body, " + strconv.FormatInt(t.body, 10) + " bytes>")
		t.body = 0
	}
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
