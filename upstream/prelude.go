package upstream

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// go-smtp's client cannot send its own EHLO name before STARTTLS (it says
// "localhost", which Google's relay refuses), so relay speaks the plain
// prelude itself: it reads the greeting, sends EHLO with helo_name and
// STARTTLS, and hands go-smtp the secured connection with the original
// greeting replayed in front of it.

// stepError is a failure in the prelude before go-smtp takes over.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }

func (e *stepError) toError(addr string) *Error { return classify(addr, e.step, e.err) }

// readGreeting reads the server's 220 greeting (RFC 5321 §4.2), and returns
// it as raw bytes to replay.
func readGreeting(conn net.Conn, tr *trace) ([]byte, error) {
	var raw strings.Builder
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		raw.WriteString(line)
		if raw.Len() > 4096 {
			return nil, fmt.Errorf("greeting longer than 4096 bytes")
		}
		tr.note("S: ", strings.TrimRight(line, "\r\n"))
		if len(line) < 4 || !isReply([]byte(line)) {
			return nil, fmt.Errorf("malformed greeting %q", strings.TrimSpace(line))
		}
		if line[3] != '-' {
			break
		}
	}
	if r.Buffered() > 0 {
		// RFC 5321 §4.3.1: the client waits for the greeting; a server
		// talking ahead of it is broken or hostile.
		return nil, fmt.Errorf("server sent %d bytes after its greeting", r.Buffered())
	}
	g := raw.String()
	if !strings.HasPrefix(g, "220") {
		code, msg := 0, strings.TrimSpace(g[3:])
		fmt.Sscanf(g[:3], "%d", &code)
		return nil, toSMTPError(code, msg)
	}
	return []byte(g), nil
}

// startTLS sends EHLO and STARTTLS on the plain connection (RFC 3207).
func startTLS(conn net.Conn, helo string, tr *trace) error {
	text := textproto.NewConn(conn)
	cmd := func(step string, expect int, line string) (string, error) {
		tr.note("C: ", line)
		if err := text.PrintfLine("%s", line); err != nil {
			return "", &stepError{step, err}
		}
		code, msg, err := text.ReadResponse(expect)
		for _, l := range strings.Split(msg, "\n") {
			tr.note("S: ", fmt.Sprintf("%d %s", code, l))
		}
		if err != nil {
			if te, ok := err.(*textproto.Error); ok {
				return "", &stepError{step, toSMTPError(te.Code, te.Msg)}
			}
			return "", &stepError{step, err}
		}
		return msg, nil
	}
	msg, err := cmd(StepEHLO, 250, "EHLO "+helo)
	if err != nil {
		return err
	}
	offered := false
	for _, l := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return &stepError{StepSTARTTLS, fmt.Errorf("the server does not offer STARTTLS; use_starttls is set, so relay will not send in the clear")}
	}
	if _, err = cmd(StepSTARTTLS, 220, "STARTTLS"); err != nil {
		return err
	}
	if n := text.R.Buffered(); n > 0 {
		// Plaintext after the 220 would be read as if it came over TLS
		// (the STARTTLS injection of CVE-2011-0411).
		return &stepError{StepSTARTTLS, fmt.Errorf("server sent %d bytes in the clear after agreeing to STARTTLS", n)}
	}
	return nil
}

// toSMTPError parses an enhanced code off a reply the way go-smtp does.
func toSMTPError(code int, msg string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, Message: msg}
	if f := strings.SplitN(msg, " ", 2); len(f) == 2 {
		var a, b, c int
		if n, _ := fmt.Sscanf(f[0], "%d.%d.%d", &a, &b, &c); n == 3 {
			e.EnhancedCode = smtp.EnhancedCode{a, b, c}
			e.Message = f[1]
		}
	}
	return e
}

// replayConn returns pending bytes before reading from the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

var fqdn = sync.OnceValue(func() string {
	name, err := os.Hostname()
	if err != nil {
		return ""
	}
	if isFQDN(name) {
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if cname, err := net.DefaultResolver.LookupCNAME(ctx, name); err == nil {
		if cname = strings.TrimSuffix(cname, "."); isFQDN(cname) {
			return cname
		}
	}
	return ""
})

// hostFQDN is this machine's fully qualified name, or "" when it has none.
func hostFQDN() string { return fqdn() }

func isFQDN(name string) bool {
	lower := strings.ToLower(name)
	return strings.Contains(name, ".") && lower != "localhost" && !strings.HasPrefix(lower, "localhost.")
}

// addressLiteral formats the local address for EHLO (RFC 5321 §4.1.3).
func addressLiteral(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "[127.0.0.1]"
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.String() + "]"
}
