package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens on a unixgram socket as systemd does for a
// Type=notify service.
func notifySocket(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// nextNotification reads one datagram, waiting at most 20 s.
func nextNotification(t *testing.T, conn *net.UnixConn) map[string]string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification from relay: %v", err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("notification line %q is not VARIABLE=value in %q", line, buf[:n])
		}
		fields[k] = v
	}
	return fields
}

// TestSDNotify: the built binary, run as systemd runs a Type=notify
// service, says READY=1 once it accepts connections, RELOADING=1 with
// MONOTONIC_USEC and then READY=1 around SIGHUP, and STOPPING=1 on
// SIGTERM; on a socket path and on an abstract socket.
func TestSDNotify(t *testing.T) {
	for _, tc := range []struct{ name, socket string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", fmt.Sprintf("@relay-test-%d-%d", os.Getpid(), time.Now().UnixNano())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := notifySocket(t, tc.socket)
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "relay.toml"), []byte("[[profiles]]\nname = \"local\"\nkind = \"maildir\"\npath = \"maildir\"\n[server]\ndefault_profile = \"local\"\n"), 0o644)
			p := startBinary(t, dir, []string{"NOTIFY_SOCKET=" + tc.socket})

			ready := nextNotification(t, sock)
			if ready["READY"] != "1" || !strings.Contains(ready["STATUS"], p.addr) {
				t.Fatalf("first notification = %q; want READY=1 and a STATUS naming %s", ready, p.addr)
			}
			// READY=1 means it serves: a client is greeted at once.
			sendSMTP(t, p.addr, "app@example.com", []string{"ops@example.com"}, "Subject: after READY\r\n\r\nhi\r\n")

			before, _ := monotonicUsec()
			p.signal(t, syscall.SIGHUP)
			reloading := nextNotification(t, sock)
			after, _ := monotonicUsec()
			if reloading["RELOADING"] != "1" {
				t.Fatalf("after SIGHUP: %q; want RELOADING=1", reloading)
			}
			usec, err := strconv.ParseInt(reloading["MONOTONIC_USEC"], 10, 64)
			if err != nil || usec < before || usec > after {
				t.Errorf("MONOTONIC_USEC = %q; want CLOCK_MONOTONIC between %d and %d", reloading["MONOTONIC_USEC"], before, after)
			}
			if n := nextNotification(t, sock); n["READY"] != "1" || !strings.Contains(n["STATUS"], "configuration reloaded") {
				t.Errorf("after the reload: %q; want READY=1 and STATUS saying the configuration was reloaded", n)
			}

			p.signal(t, syscall.SIGTERM)
			if n := nextNotification(t, sock); n["STOPPING"] != "1" {
				t.Errorf("after SIGTERM: %q; want STOPPING=1", n)
			}
			if code := p.waitExit(t); code != 0 {
				t.Errorf("exit status %d after SIGTERM; want 0", code)
			}
		})
	}
}

// TestSDNotifyReloadRefused: a bad file on SIGHUP still ends the reload
// with READY=1, and STATUS carries the first FILE:LINE problem.
func TestSDNotifyReloadRefused(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	sock := notifySocket(t, socket)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "relay.toml")
	os.WriteFile(cfg, []byte("[[profiles]]\nname = \"local\"\nkind = \"maildir\"\npath = \"maildir\"\n"), 0o644)
	p := startBinary(t, dir, []string{"NOTIFY_SOCKET=" + socket}, "-config", cfg)
	nextNotification(t, sock)
	os.WriteFile(cfg, []byte("[[profiles]]\nname = \"local\"\nkind = \"maildir\"\npath = \"maildir\"\n\n[server]\nlisten = 2525\nmax_recipients = 0\n"), 0o644)
	p.signal(t, syscall.SIGHUP)
	nextNotification(t, sock) // RELOADING=1
	n := nextNotification(t, sock)
	if n["READY"] != "1" || !strings.Contains(n["STATUS"], "reload refused: "+cfg+":") {
		t.Errorf("after a bad reload: %q; want READY=1 and STATUS: reload refused: %s:LINE", n, cfg)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ok", "ok"},
		{"a.toml:3: x\na.toml:5: y\n", "a.toml:3: x (and 1 more lines)"},
		{"a\nb\nc", "a (and 2 more lines)"},
	} {
		if got := oneLine(tc.in); got != tc.want {
			t.Errorf("oneLine(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestSDNotifyRefusesOtherAddresses(t *testing.T) {
	if err := sdNotify("vsock:2:123", "READY=1"); err == nil {
		t.Error("sdNotify(vsock:...) = nil; want an error")
	}
}
