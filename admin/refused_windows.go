package admin

import (
	"errors"

	"golang.org/x/sys/windows"
)

// connRefused reports whether err says that nothing listens at the address
// dialled. Winsock reports it as WSAECONNREFUSED (10061), which is not
// syscall.ECONNREFUSED on Windows (there an invented Errno that no socket
// call returns).
func connRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }
