//go:build !unix

package spool

import "testing"

// inode is 0: the system has no inode numbers to compare.
func inode(t *testing.T, name string) uint64 { return 0 }
