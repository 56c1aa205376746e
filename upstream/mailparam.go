package upstream

import (
	"bytes"
	"net"
)

// mailParamConn makes MAIL FROM carry the BODY= parameter the client
// declared (RFC 6152 §2), or none. go-smtp's client adds BODY=8BITMIME to
// every MAIL FROM when the server offers 8BITMIME, whatever the message;
// mailParamConn rewrites that parameter in the one write of the command
// line. Conn.Mail sets body for the command it sends.
type mailParamConn struct {
	net.Conn
	body string // "", "7BIT" or "8BITMIME"
}

var (
	mailFrom        = []byte("MAIL FROM:<")
	goSMTPBodyParam = []byte(" BODY=8BITMIME")
)

func (c *mailParamConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, mailFrom) {
		return c.Conn.Write(p)
	}
	// go-smtp writes "MAIL FROM:<addr> BODY=8BITMIME ...": the parameter
	// follows the first "> " (an address with a '>' is refused earlier).
	end := bytes.IndexByte(p, '>')
	if end < 0 || !bytes.HasPrefix(p[end+1:], goSMTPBodyParam) {
		return c.Conn.Write(p)
	}
	line := make([]byte, 0, len(p))
	line = append(line, p[:end+1]...)
	if c.body != "" {
		line = append(line, " BODY="+c.body...)
	}
	line = append(line, p[end+1+len(goSMTPBodyParam):]...)
	if _, err := c.Conn.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}
