package main

// Helpers for the tests of relay as a service: signals, log lines and a
// plain SMTP client.

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// signal sends sig to the running binary.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits, at most 40 s, for the binary to exit and returns its
// exit status.
func (p *proc) waitExit(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(40 * time.Second):
		t.Fatalf("relay did not exit; stderr:\n%s", p.stderr)
		return -1
	}
}

// waitLog waits, at most 20 s, until the binary's stderr holds want n
// times, and returns stderr.
func (p *proc) waitLog(t *testing.T, want string, n int) string {
	t.Helper()
	// startBinary prints the whole log when the test fails.
	testpeer.WaitFor(t, fmt.Sprintf("%q %d times in relay's log", want, n), 20*time.Second, func() bool {
		return strings.Count(p.stderr.String(), want) >= n
	})
	return p.stderr.String()
}

// dialSMTP opens an SMTP client connection to addr and says EHLO.
func dialSMTP(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 30 * time.Second
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("test.example.com"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// sendOn sends one message on an open client connection.
func sendOn(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

// sendSMTP sends one message on a new connection.
func sendSMTP(t *testing.T, addr, from string, to []string, msg string) {
	t.Helper()
	c := dialSMTP(t, addr)
	if err := sendOn(c, from, to, msg); err != nil {
		t.Fatalf("send from %s: %v", from, err)
	}
	c.Quit()
}
