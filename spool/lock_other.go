//go:build !unix

package spool

import "os"

// lockFile does nothing where flock(2) is missing: one process per spool is
// then up to the operator.
func lockFile(*os.File) error { return nil }
