package admin

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/windows"
)

// TestConnRefusedWinsock: the error net.Dial returns on Windows when
// nothing listens, as the net package builds it (connectex and
// WSAECONNREFUSED), is a refusal. (syscall.ECONNREFUSED, which the Unix
// check uses, is on Windows an invented Errno that Winsock never returns.)
func TestConnRefusedWinsock(t *testing.T) {
	err := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connectex", windows.WSAECONNREFUSED)}
	if !connRefused(err) {
		t.Errorf("connRefused(%v) = false; want true", err)
	}
}
