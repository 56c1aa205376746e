//go:build !windows

package relay

import (
	"errors"
	"syscall"
)

// connReset reports whether err is the peer's TCP reset (ECONNRESET):
// what a health check that closes with SO_LINGER 0 leaves.
// connreset_windows.go has Windows' own error for it.
func connReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
