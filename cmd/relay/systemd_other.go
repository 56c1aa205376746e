//go:build !linux

package main

import "io"

// monotonicUsec: systemd runs on Linux only.
func monotonicUsec() (int64, bool) { return 0, false }

// writesToJournal: the journal is systemd's, on Linux only.
func writesToJournal(io.Writer) bool { return false }
