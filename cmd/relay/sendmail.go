package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
)

// Exit statuses of sendmail(8), from <sysexits.h>: cron, PHP's mail() and
// scripts act on them.
const (
	exUsage    = 64 // EX_USAGE: a bad flag
	exDataErr  = 65 // EX_DATAERR: no recipients, or a header we cannot read
	exIOErr    = 74 // EX_IOERR: reading the message on stdin failed
	exTempFail = 75 // EX_TEMPFAIL: relay is not running or refused for now; try again later
	exNoPerm   = 77 // EX_NOPERM: relay refused the message for good (5xx)
	exConfig   = 78 // EX_CONFIG: the configuration file cannot be read
)

// systemConfig is where the systemd unit (dist/relay.service) reads its
// configuration. relay sendmail looks there after ./relay.toml, so that
// /usr/sbin/sendmail → relay finds the service from any directory. A
// variable for tests.
var systemConfig = "/etc/relay/relay.toml"

// maxHeaderBytes bounds the header section read before the message is
// sent: -t needs all of it to know the recipients.
const maxHeaderBytes = 1 << 20

// isSendmailName reports whether relay runs under sendmail's name, as a
// symlink /usr/sbin/sendmail → relay.
func isSendmailName(argv0 string) bool { return filepath.Base(argv0) == "sendmail" }

// sendmailOptions are the sendmail(8) flags relay understands.
type sendmailOptions struct {
	extract    bool   // -t: recipients from To, Cc and Bcc
	from       string // -f, -r: envelope sender; "" with fromSet is the null sender <>
	fromSet    bool
	fullName   string // -F: the sender's name, for a From header relay adds
	ignoreDots bool   // -i, -oi: a line with a lone "." does not end the message
	verbose    bool   // -v
	config     string // -config, -C
	smtpAddr   string // -smtp: relay's address, instead of server.listen
	rcpts      []string
}

// sendmailUsage is printed on a bad flag and for --help.
const sendmailUsage = `usage: relay sendmail [flags] [recipient ...] < message
       (or as sendmail, through a symlink /usr/sbin/sendmail -> relay)
Submits the message on stdin to the running relay over SMTP.
  -t             also send to the To, Cc and Bcc headers' addresses (Bcc is removed)
  -f ADDR        envelope sender (also -r); default: the user running it @ this host
  -F NAME        the sender's full name, for the From header added when there is none
  -i, -oi        a line with a lone "." does not end the message
  -v             say what relay answered
  -config FILE   relay's configuration, for server.listen (also -C); default
                 $RELAY_CONFIG, else ./relay.toml, else /etc/relay/relay.toml,
                 else 127.0.0.1:2525
  -smtp ADDR     relay's SMTP address (host:port) instead of server.listen
Accepted and ignored: -B -G -L -N -O -R -U -V -X -bm -c -e -h -m -n -o* -p -x.
Exit status: 0 sent, 64 bad flags, 65 no recipients, 75 relay not running or
refused for now (try again later), 77 refused for good (5xx), 78 config unreadable.
`

// errHelp asks for the usage text.
var errHelp = errors.New("help")

// parseSendmailArgs reads sendmail's flags the way getopt(3) does:
// letters may be grouped (-ti), an argument may be attached (-fme@x) or
// follow (-f me@x), and the first argument that is not a flag starts the
// recipients. relay's own -config and -smtp are recognised whole.
func parseSendmailArgs(args []string) (*sendmailOptions, error) {
	o := &sendmailOptions{}
	i := 0
	next := func(flag string) (string, error) {
		if i+1 >= len(args) {
			return "", fmt.Errorf("flag -%s needs an argument", flag)
		}
		i++
		return args[i], nil
	}
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "config", "smtp":
			if !hasValue {
				v, err := next(name)
				if err != nil {
					return nil, err
				}
				value = v
			}
			if name == "config" {
				o.config = value
			} else {
				o.smtpAddr = value
			}
			continue
		case "help":
			return nil, errHelp
		}
	letters:
		for j := 1; j < len(a); j++ {
			c := a[j]
			var arg string
			takesArg := strings.IndexByte("BCFLNORVXbefhopqr", c) >= 0
			if takesArg {
				arg = a[j+1:]
				if arg == "" {
					v, err := next(string(c))
					if err != nil {
						return nil, err
					}
					arg = v
				}
			}
			switch c {
			case 't':
				o.extract = true
			case 'i':
				o.ignoreDots = true
			case 'v':
				o.verbose = true
			case 'G', 'U', 'c', 'm', 'n', 'x':
				// Gateway, initial submission, cheap connections, me too,
				// no aliases, ...: nothing to do for relay.
			case 'f', 'r':
				o.from, o.fromSet = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(arg), "<"), ">"), true
			case 'F':
				o.fullName = arg
			case 'C':
				o.config = arg
			case 'o':
				if arg == "i" {
					o.ignoreDots = true
				}
				// -odb, -odi, -oem, -oep, -om, ...: delivery and error
				// modes of the old sendmail; relay always hands the
				// message over at once and reports by exit status.
			case 'b':
				switch arg {
				case "m":
				case "s":
					return nil, errors.New("-bs (SMTP on stdin) is not supported: talk SMTP to relay's listener directly")
				case "p":
					return nil, errors.New("-bp (list the queue) is not supported here: use relay queue list")
				default:
					return nil, fmt.Errorf("-b%s is not supported; only -bm (read a message on stdin, the default)", arg)
				}
			case 'q':
				return nil, errors.New("-q (run the queue) is not supported here: use relay queue retry all")
			case 'B', 'L', 'N', 'O', 'R', 'V', 'X', 'e', 'h', 'p':
				// Body type, log label, DSN options, log file, error mode,
				// hop count, protocol: accepted and ignored.
			default:
				return nil, fmt.Errorf("unknown flag -%c", c)
			}
			if takesArg {
				break letters // the rest of a was the argument
			}
		}
	}
	o.rcpts = args[i:]
	return o, nil
}

// runSendmail is `relay sendmail`, and relay run as sendmail: it reads a
// message on stdin and submits it to the running relay over SMTP.
func runSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "sendmail: "+format+"\n", a...)
		return code
	}
	o, err := parseSendmailArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, sendmailUsage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n%s", err, sendmailUsage)
		return exUsage
	}
	addr, source, err := sendmailTarget(o)
	if err != nil {
		return fail(exConfig, "%v", err)
	}

	host := localHostname()
	sender := o.from
	switch {
	case !o.fromSet:
		sender = localUser() + "@" + host
	case sender != "" && !strings.Contains(sender, "@"):
		sender += "@" + host // -f root, as cronie passes it: root@host, as sendmail qualifies it
	}
	var rcpts []string
	for _, a := range o.rcpts {
		list, err := parseAddrList(a, host)
		if err != nil {
			return fail(exUsage, "recipient %q: %v", a, err)
		}
		rcpts = append(rcpts, list...)
	}

	in := bufio.NewReaderSize(stdin, 64<<10)
	h, err := readHeader(in, !o.ignoreDots)
	if err != nil {
		var de dataError
		if errors.As(err, &de) {
			return fail(exDataErr, "%v", err)
		}
		return fail(exIOErr, "read the message on stdin: %v", err)
	}
	if o.extract {
		list, err := h.recipients(host)
		if err != nil {
			return fail(exDataErr, "%v", err)
		}
		rcpts = append(rcpts, list...)
	}
	rcpts = dedupe(rcpts)
	if len(rcpts) == 0 {
		return fail(exDataErr, "no recipients: give them as arguments, or use -t to take them from the To, Cc and Bcc headers")
	}
	fromHeader := sender
	if fromHeader == "" {
		fromHeader = localUser() + "@" + host
	}
	h.complete(&mail.Address{Name: o.fullName, Address: fromHeader}, host, time.Now())

	body := &bodyReader{r: in, stopAtDot: !o.ignoreDots, done: h.end}
	reply, err := submit(addr, host, sender, rcpts, h.bytes(), body)
	if err != nil {
		var re *readError
		switch {
		case errors.As(err, &re):
			return fail(exIOErr, "read the message on stdin: %v; nothing was sent", re.err)
		case isUnreachable(err):
			return fail(exTempFail, "cannot reach relay at %s (%s): %v; is relay running? (systemctl status relay, or relay serve)", addr, source, unwrapOp(err))
		}
		return fail(exitForSMTP(err), "relay at %s did not take the message: %v", addr, err)
	}
	if o.verbose {
		fmt.Fprintf(stderr, "sendmail: relay at %s took the message for %d recipients: %s\n", addr, len(rcpts), reply)
	}
	return exitOK
}

// sendmailTarget finds relay's SMTP address: -smtp, else server.listen
// from the configuration serve would read (-config, $RELAY_CONFIG,
// ./relay.toml), else from /etc/relay/relay.toml, else the embedded
// default's. It says where the address came from.
func sendmailTarget(o *sendmailOptions) (addr, source string, err error) {
	if o.smtpAddr != "" {
		return o.smtpAddr, "-smtp", nil
	}
	path := configPath(o.config)
	if path == "" {
		if _, err := os.Stat(systemConfig); err == nil {
			path = systemConfig
		}
	}
	listen := config.Embedded().Server.Listen
	source = config.EmbeddedName
	if path != "" {
		// Only server.listen matters here, so the file is not validated:
		// secrets in *_file files that only relay may read stay unread.
		var f struct {
			Server struct {
				Listen string `toml:"listen"`
			} `toml:"server"`
		}
		if _, err := toml.DecodeFile(path, &f); err != nil {
			return "", "", fmt.Errorf("read server.listen from %s: %v (or pass -smtp HOST:PORT)", path, err)
		}
		if f.Server.Listen != "" {
			listen = f.Server.Listen
		}
		source = "server.listen in " + path
	}
	return dialAddr(listen), source, nil
}

// dialAddr turns a listen address into one to connect to: a wildcard
// host becomes the loopback address.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

func localHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// localUser is the name of the user running sendmail, as sendmail uses
// it for the default sender.
func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, env := range []string{"USER", "LOGNAME"} {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return "nobody"
}

// parseAddrList reads a list of addresses, from an argument or a header.
// A bare local name such as "root" gets @host, as sendmail qualifies it.
func parseAddrList(s, host string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if list, err := mail.ParseAddressList(s); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case !strings.ContainsAny(part, "@<>\" \t()[]:;\\"):
			out = append(out, part+"@"+host)
		default:
			a, err := mail.ParseAddress(part)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", part, err)
			}
			out = append(out, a.Address)
		}
	}
	return out, nil
}

// dedupe drops repeated addresses (compared without case), keeping the
// first.
func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0]
	for _, a := range list {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

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

// bodyReader streams the rest of stdin, ending at a lone "." line when
// stopAtDot. Errors reading stdin come back as *readError, so that they
// are not taken for network trouble.
type bodyReader struct {
	r         *bufio.Reader
	stopAtDot bool
	done      bool
	midLine   bool // the last piece did not end a line
	pending   []byte
}

type readError struct{ err error }

func (e *readError) Error() string { return "read stdin: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.done {
			return 0, io.EOF
		}
		line, err := b.r.ReadSlice('\n')
		if b.stopAtDot && !b.midLine {
			if t := string(line); t == ".\n" || t == ".\r\n" || (t == "." && err == io.EOF) {
				b.done = true
				return 0, io.EOF
			}
		}
		b.midLine = len(line) > 0 && line[len(line)-1] != '\n'
		b.pending = line // valid until the next ReadSlice, after it is used up
		switch {
		case err == io.EOF:
			b.done = true
		case err != nil && err != bufio.ErrBufferFull:
			return 0, &readError{err}
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// submit sends one message to relay over SMTP and returns relay's reply.
// If relay refuses a recipient, nothing is sent: sendmail's caller then
// sees one clear outcome and may retry without sending twice.
func submit(addr, helo, from string, rcpts []string, head []byte, body io.Reader) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return "", err
	}
	utf8 := !isASCII(from)
	for _, r := range rcpts {
		utf8 = utf8 || !isASCII(r)
	}
	if err := c.Mail(from, &smtp.MailOptions{UTF8: utf8}); err != nil {
		return "", fmt.Errorf("sender <%s>: %w", from, err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			c.Reset()
			c.Quit()
			return "", fmt.Errorf("recipient <%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(head); err != nil {
		return "", err
	}
	if _, err := io.Copy(w, body); err != nil {
		// Closing the connection without the final dot makes relay drop
		// the message.
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	c.Quit()
	return resp.StatusText, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isUnreachable reports whether relay could not be reached at all.
func isUnreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// unwrapOp drops the "dial tcp ADDR:" prefix the message already says.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// exitForSMTP: a 5xx reply is permanent (EX_NOPERM); anything else,
// 4xx or a connection that broke, is worth trying again (EX_TEMPFAIL).
func exitForSMTP(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		return exNoPerm
	}
	return exTempFail
}
