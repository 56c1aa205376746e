//go:build !unix

package spool

import "os"

// createExcl creates name for writing with mode 0600, failing if it exists.
func createExcl(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// openRead opens name for reading.
func openRead(name string) (*os.File, error) { return os.Open(name) }

// openWrite opens the existing file name for writing from its start,
// without truncating it.
func openWrite(name string) (*os.File, error) { return os.OpenFile(name, os.O_WRONLY, 0) }
