package spool

import (
	"os"
	"path/filepath"
	"strconv"
)

// Spool files are recycled: the file of a message removed from the queue
// is renamed to queue/free-N.tmp and becomes the file of a later message,
// overwritten from its start and cut to its new length before it is
// fsynced. A steady flow of messages then creates and deletes no inode per
// message. That matters on ext4 without a journal (as on many virtual
// machines), where allocating an inode scans past every inode deleted in
// the last minute or more: with one file created and one deleted per
// message, relay spent more of its time there, under the queue
// directory's lock, than in anything else (bench/, docs/design.md).
//
// A recycled file holds a delivered message's old octets until it is
// reused; it is 0600 in the 0700 queue directory like every spool file, and
// its name ends in .tmp, so Open (this version or any older one) deletes it
// after a crash or restart. Only small files are kept (recycleMaxFile each,
// at most recycleMax of them), so the pool holds at most a few MiB of disk.
const (
	recycleMax     = 64
	recycleMaxFile = 256 << 10
	freePrefix     = "free-"
)

// recycle keeps the file of the removed message id for reuse, if it is
// small, no one is reading it and the pool has room; else it deletes it.
// size is the file's length. s.mu is not held.
func (s *Spool) recycle(id string, size int64) error {
	path := s.msgPath(id)
	s.mu.Lock()
	keep := size <= recycleMaxFile && len(s.free)+s.recycling < recycleMax && s.reading[id] == 0
	if keep {
		s.recycling++
	}
	s.mu.Unlock()
	if !keep {
		return os.Remove(path)
	}
	free := filepath.Join(s.queue, freePrefix+strconv.FormatUint(s.tmpSeq.Add(1), 10)+tmpSuffix)
	err := rename(path, free)
	s.mu.Lock()
	s.recycling--
	if err == nil {
		s.free = append(s.free, free)
	}
	s.mu.Unlock()
	if err != nil {
		return os.Remove(path)
	}
	return nil
}

// reuse turns a recycled file into queue/ID.tmp for a new message and
// opens it for writing from its start; nil when the pool is empty or the
// file cannot be used (it is then deleted, and the caller creates a new
// one). The caller cuts the file to the new message's length before it
// fsyncs it (Writer.commit).
func (s *Spool) reuse(id string) *os.File {
	s.mu.Lock()
	n := len(s.free)
	if n == 0 {
		s.mu.Unlock()
		return nil
	}
	free := s.free[n-1]
	s.free = s.free[:n-1]
	s.mu.Unlock()
	// IDs increase strictly within the process and Open swept every
	// ID.tmp, so the rename replaces nothing.
	tmp := s.tmpMsgPath(id)
	if err := rename(free, tmp); err != nil {
		os.Remove(free)
		return nil
	}
	f, err := openWrite(tmp)
	if err != nil {
		os.Remove(tmp)
		return nil
	}
	return f
}

// trackLocked counts an open reader of message id, so that its file is
// not recycled under it; the returned function ends it. s.mu is held, as
// for the index look-up that found id (Open).
func (s *Spool) trackLocked(id string) func() {
	s.reading[id]++
	return func() {
		s.mu.Lock()
		if s.reading[id]--; s.reading[id] <= 0 {
			delete(s.reading, id)
		}
		s.mu.Unlock()
	}
}
