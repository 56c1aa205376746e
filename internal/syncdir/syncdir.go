// Package syncdir makes a directory's entries durable: after a file is
// created, renamed or removed in a directory, Path (or File, on a
// directory already open) returns once that change is on disk.
//
// On Unix this is fsync(2) of the directory, as POSIX requires for the
// entry itself to survive a crash. Windows has no such call:
// FlushFileBuffers on a directory handle fails with "Access is denied",
// and NTFS writes directory changes through its own metadata journal, so
// there both functions only check that the directory exists.
package syncdir

import "os"

// Path makes the entries of the directory name durable.
func Path(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = File(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
