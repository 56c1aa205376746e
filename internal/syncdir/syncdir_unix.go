//go:build !windows

package syncdir

import "os"

// File makes the entries of the open directory d durable: fsync(2).
func File(d *os.File) error { return d.Sync() }
