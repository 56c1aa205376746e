package main

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock of
// MONOTONIC_USEC in sd_notify(3). Go's own monotonic clock readings are not
// exposed, so ask the kernel.
func monotonicUsec() (int64, bool) {
	const clockMonotonic = 1 // CLOCK_MONOTONIC in <time.h>
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, false
	}
	return ts.Nano() / 1000, true
}

// writesToJournal reports whether w is the stream systemd connected to
// the journal: $JOURNAL_STREAM holds its device and inode
// (systemd.exec(5)), so a redirected stderr does not count.
func writesToJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	env := os.Getenv("JOURNAL_STREAM")
	if !ok || env == "" {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return env == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
