//go:build unix

package spool

import (
	"os"
	"syscall"
)

// openFile is os.OpenFile without the attempt to put a regular file into
// the network poller, which costs four fcntl and one epoll_ctl system
// calls per file on Linux.
func openFile(name string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, perm)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}

// createExcl creates name for writing with mode 0600, failing if it exists.
func createExcl(name string) (*os.File, error) {
	return openFile(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL, 0o600)
}

// openRead opens name for reading.
func openRead(name string) (*os.File, error) { return openFile(name, syscall.O_RDONLY, 0) }

// openWrite opens the existing file name for writing from its start,
// without truncating it.
func openWrite(name string) (*os.File, error) { return openFile(name, syscall.O_WRONLY, 0) }
