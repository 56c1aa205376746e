//go:build !unix

package relay

import "testing"

// permissiveUmask: file modes and the umask are POSIX; where they are
// missing the test that needs them skips.
func permissiveUmask(t *testing.T) {
	t.Skip("file modes are POSIX; this system has none")
}
