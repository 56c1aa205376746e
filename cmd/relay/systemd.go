package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// notifier tells systemd about relay's state with the sd_notify(3)
// protocol, without libsystemd: one datagram of newline-separated
// VARIABLE=value lines to the unix socket named by $NOTIFY_SOCKET, which
// systemd sets for Type=notify services. Without $NOTIFY_SOCKET every
// method does nothing.
type notifier struct {
	addr   string
	logger *slog.Logger
}

// newNotifier reads $NOTIFY_SOCKET.
func newNotifier(logger *slog.Logger) *notifier {
	return &notifier{addr: os.Getenv("NOTIFY_SOCKET"), logger: logger}
}

// ready reports that relay serves: READY=1 at startup, and again after a
// reload.
func (n *notifier) ready(status string) { n.send("READY=1", "STATUS="+oneLine(status)) }

// reloading reports that relay reads its configuration again. systemd
// (Type=notify-reload, systemd 253 and later) wants the CLOCK_MONOTONIC
// time of the request with it.
func (n *notifier) reloading(status string) {
	lines := []string{"RELOADING=1"}
	if usec, ok := monotonicUsec(); ok {
		lines = append(lines, fmt.Sprintf("MONOTONIC_USEC=%d", usec))
	}
	n.send(append(lines, "STATUS="+oneLine(status))...)
}

// stopping reports that relay shuts down.
func (n *notifier) stopping(status string) { n.send("STOPPING=1", "STATUS="+oneLine(status)) }

// status updates the one-line status `systemctl status relay` shows.
func (n *notifier) status(status string) { n.send("STATUS=" + oneLine(status)) }

func (n *notifier) send(lines ...string) {
	if n.addr == "" {
		return
	}
	if err := sdNotify(n.addr, strings.Join(lines, "\n")+"\n"); err != nil {
		n.logger.Warn("systemd notification failed", "socket", n.addr, "error", err.Error())
	}
}

// sdNotify sends one notification datagram to addr: a path, or a name in
// the abstract namespace when it starts with '@' (which Go's net package
// turns into the leading NUL byte, as sd_notify does).
func sdNotify(addr, msg string) error {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		// vsock:CID:PORT (systemd 253+, for virtual machines) is not supported.
		return fmt.Errorf("NOTIFY_SOCKET %q: only unix socket paths and @abstract names are supported", addr)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Write([]byte(msg))
	return err
}

// oneLine keeps a STATUS= value on one line: the first line, with a note
// of how many more there were.
func oneLine(s string) string {
	first, rest, more := strings.Cut(strings.TrimSpace(s), "\n")
	if !more {
		return first
	}
	return fmt.Sprintf("%s (and %d more lines)", strings.TrimSpace(first), strings.Count(rest, "\n")+1)
}
