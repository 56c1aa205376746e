//go:build !windows

package admin

import (
	"errors"
	"syscall"
)

// connRefused reports whether err says that nothing listens at the address
// dialled: ECONNREFUSED, the TCP reset answering a SYN to a closed port.
// refused_windows.go has Windows' own error for it.
func connRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
