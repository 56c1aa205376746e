//go:build unix

package relay

import (
	"syscall"
	"testing"
)

// permissiveUmask sets the umask to 0, the most permissive, until the
// test ends.
func permissiveUmask(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}
