package relay

import (
	"errors"

	"golang.org/x/sys/windows"
)

// connReset reports whether err is the peer's TCP reset. Winsock reports
// it as WSAECONNRESET (10054), which is not syscall.ECONNRESET on Windows
// (there an invented Errno that no socket call returns).
func connReset(err error) bool { return errors.Is(err, windows.WSAECONNRESET) }
