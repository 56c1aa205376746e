package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/sendmail"
)

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
                 $RELAY_CONFIG, else ./relay.toml, else /etc/relay/relay.toml
                 (Windows: %ProgramData%\relay\relay.toml), else 127.0.0.1:2525
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
// message on stdin and submits it to the running relay over SMTP (package
// sendmail). Its exit status is sendmail(8)'s.
func runSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseSendmailArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, sendmailUsage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n%s", err, sendmailUsage)
		return sendmail.ExUsage
	}
	addr, source, err := sendmailTarget(o)
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n", err)
		return sendmail.ExConfig
	}
	res, err := sendmail.Send(context.Background(), sendmail.Submission{
		Relay:       addr,
		RelaySource: source,
		From:        o.from,
		FromSet:     o.fromSet,
		FullName:    o.fullName,
		Recipients:  o.rcpts,
		Extract:     o.extract,
		IgnoreDots:  o.ignoreDots,
	}, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: %v\n", err)
		var se *sendmail.Error
		if errors.As(err, &se) {
			return se.Status
		}
		return sendmail.ExTempFail
	}
	if o.verbose {
		fmt.Fprintf(stderr, "sendmail: relay at %s took the message for %d recipients: %s\n", addr, len(res.Recipients), res.Reply)
	}
	return exitOK
}

// sendmailTarget finds relay's SMTP address: -smtp, else server.listen
// from the configuration serve would read (-config, $RELAY_CONFIG,
// ./relay.toml), else from the service's (systemConfig), else the
// embedded default's. It says where the address came from.
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
		// Only [server] is decoded: the rest of the file is not validated,
		// and secrets in *_file files that only relay may read stay unread.
		data, err := os.ReadFile(path)
		var server config.Server
		if err == nil {
			server, err = config.DecodeServer(path, data)
		}
		if err != nil {
			return "", "", fmt.Errorf("read server.listen from %s: %v (or pass -smtp HOST:PORT)", path, err)
		}
		if server.Listen != "" {
			listen = server.Listen
		}
		source = "server.listen in " + path
	}
	addr, err = config.DialAddr(listen)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w (or pass -smtp HOST:PORT)", source, err)
	}
	return addr, source, nil
}
