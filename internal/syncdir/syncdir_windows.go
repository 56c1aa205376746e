package syncdir

import "os"

// File does nothing on Windows but report that d is a directory: NTFS
// journals directory changes itself, and FlushFileBuffers refuses a
// directory handle.
func File(d *os.File) error {
	_, err := d.Stat()
	return err
}
