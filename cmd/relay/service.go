package main

// relay as a service: the hooks relay serve offers a service manager, and
// the parts of the Windows service that need no Windows API, so that they
// build and are tested on every system. service_windows.go holds the rest.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// serveHooks connect relay serve to the service manager that runs it. The
// zero value serves a terminal, or systemd through $NOTIFY_SOCKET.
type serveHooks struct {
	// logHandler, if set, wraps relay's log handler: the Windows service
	// adds the Event Log.
	logHandler func(slog.Handler) slog.Handler
	// notifier, if set, replaces sd_notify: it is told when relay serves,
	// reloads and stops.
	notifier func(*slog.Logger) stateNotifier
	// reload, if set, asks for a reload as SIGHUP does.
	reload <-chan struct{}
}

// stateNotifier is told what relay serve is doing: systemd's notifier,
// or the Windows service's status.
type stateNotifier interface {
	ready(status string)     // accepting connections
	reloading(status string) // reading the configuration again
	stopping(status string)  // draining before exit
}

// serviceName is the Windows service's name and its Event Log source.
const serviceName = "relay"

// serviceUsage lists the subcommands of relay service.
const serviceUsage = `usage: relay service install [-config FILE] | uninstall | start | stop | status
  install    register relay.exe (where it is now) as the automatic service "relay",
             running "relay service run -config FILE" as LocalSystem; make
             %ProgramData%\relay\ with relay.toml (if missing), data\ and logs\
  uninstall  stop and remove the service; the files under %ProgramData%\relay stay
  start      start the service and wait until it accepts connections
  stop       stop it: transactions in progress finish first (up to 30 s)
  status     print the service's state
  run        what the Service Control Manager starts (not for a console: use relay serve)
`

// runService is relay service: the Windows service's subcommands.
func runService(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(stderr, serviceUsage)
		return exitFail
	}
	return serviceCommand(args[0], args[1:], stdout, stderr)
}

// windowsLayout is where the Windows service keeps its files.
type windowsLayout struct {
	root   string // %ProgramData%\relay: relay.toml; readable by Users
	config string // root\relay.toml
	data   string // root\data: server.data_dir; SYSTEM and Administrators only
	logs   string // root\logs: relay.log; SYSTEM and Administrators only
}

// layoutUnder is the layout under programData (%ProgramData%, usually
// C:\ProgramData), with Windows separators whatever system builds it.
func layoutUnder(programData string) windowsLayout {
	root := strings.TrimRight(programData, `\`) + `\relay`
	return windowsLayout{root: root, config: root + `\relay.toml`, data: root + `\data`, logs: root + `\logs`}
}

// systemConfigPath is where relay's service reads its configuration on
// goos: /etc/relay/relay.toml for the systemd unit (dist/relay.service), and
// the Windows service's relay.toml under programData (layoutUnder), the
// default of relay service install -config.
func systemConfigPath(goos, programData string) string {
	if goos == "windows" {
		return layoutUnder(programData).config
	}
	return "/etc/relay/relay.toml"
}

// defaultConfig is the relay.toml that relay service install writes when
// there is none: as dist/relay.toml for systemd, mail from this machine
// goes into a Maildir in the data directory until the admin adds a real
// profile.
func (l windowsLayout) defaultConfig() (string, error) {
	// TOML literal strings keep backslashes as they are, and cannot hold
	// a quote.
	if strings.ContainsAny(l.data, "'\n") {
		return "", fmt.Errorf("data directory %q: a quote or a newline cannot stand in relay.toml", l.data)
	}
	return fmt.Sprintf(`# relay.toml of the relay Windows service, written by relay service install.
# relay.toml.example documents every key.
#
# As written, mail from this machine goes into the Maildir
# %[1]s\maildir\new and nothing leaves the machine. Add a real profile
# (README, "Quick start: a real upstream"), make it default_profile, then:
#
#   relay check -config "%[2]s"
#   sc.exe control relay paramchange      (or: relay service stop, relay service start)
#
# Windows paths go in single quotes, which keep backslashes: 'C:\path'.
# Put passwords and client secrets in files under '%[1]s'
# (readable by SYSTEM and Administrators only), never inline here.

[server]
listen = "127.0.0.1:2525"
hostname = "localhost"
data_dir = '%[1]s'
allow_unauthenticated = ["127.0.0.0/8", "::1/128"]
default_profile = "local"

[[profiles]]
name = "local"
description = "every message into the data directory's maildir (replace with a real upstream)"
kind = "maildir"
path = '%[1]s\maildir'
`, l.data, l.config), nil
}

// eventSink is the Windows Event Log as relay writes to it
// (*eventlog.Log from golang.org/x/sys/windows/svc/eventlog).
type eventSink interface {
	Info(eventID uint32, msg string) error
	Warning(eventID uint32, msg string) error
	Error(eventID uint32, msg string) error
}

// Event IDs of relay's Event Log entries.
const (
	eventState = 1 // the service started, reloaded or stops
	eventLog   = 2 // a WARN or ERROR line of relay's log
	eventExit  = 3 // relay stopped with an error, or did not start
)

// eventLogHandler copies records at WARN and above to an Event Log, each
// as one text line without the time (the Event Log stamps it): a refused
// reload, a delivery failure in direct mode, a configuration error. The
// INFO lines, one per message, stay in relay's own log.
type eventLogHandler struct {
	sink  eventSink
	mu    *sync.Mutex
	buf   *bytes.Buffer
	inner slog.Handler // a text handler writing into buf
}

func newEventLogHandler(sink eventSink) *eventLogHandler {
	buf := new(bytes.Buffer)
	return &eventLogHandler{sink: sink, mu: new(sync.Mutex), buf: buf,
		inner: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: dropTime})}
}

func (h *eventLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *eventLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.buf.Reset()
	err := h.inner.Handle(ctx, r)
	line := strings.TrimSuffix(h.buf.String(), "\n")
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if r.Level >= slog.LevelError {
		return h.sink.Error(eventLog, line)
	}
	return h.sink.Warning(eventLog, line)
}

func (h *eventLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	return &c
}

func (h *eventLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}

// maxLogBytes is the size past which the service's relay.log is renamed
// relay.log.1 (replacing the previous one) when the service starts.
const maxLogBytes = 10 << 20

// openServiceLog opens the service's own log for appending, first moving
// a log past maxLogBytes aside to name.1.
func openServiceLog(name string) (*os.File, error) {
	if fi, err := os.Stat(name); err == nil && fi.Size() > maxLogBytes {
		if err := os.Rename(name, name+".1"); err != nil {
			return nil, fmt.Errorf("rotate the service log: %w", err)
		}
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the service log: %w", err)
	}
	return f, nil
}
