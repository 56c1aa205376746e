//go:build unix

package spool

import (
	"os"
	"syscall"
	"testing"
)

// inode is the inode number of name.
func inode(t *testing.T, name string) uint64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Ino)
}
