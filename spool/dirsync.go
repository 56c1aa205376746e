package spool

import "sync"

// dirSyncer groups the directory fsyncs of concurrent callers: a caller's
// Sync returns after an fsync that started after Sync was called, so the
// renames it made before are durable, but one fsync serves every caller that
// arrived while the previous one ran.
type dirSyncer struct {
	sync func() error // fsync of the directory

	mu      sync.Mutex
	cond    sync.Cond
	running bool       // an fsync is in flight
	pending *syncBatch // callers waiting for the next fsync, or nil
	fsyncs  int64      // fsyncs made, for benchmarks
}

// syncBatch is the callers served by one fsync, and its outcome.
type syncBatch struct {
	done bool
	err  error
}

func newDirSyncer(sync func() error) *dirSyncer {
	d := &dirSyncer{sync: sync}
	d.cond.L = &d.mu
	return d
}

// Sync returns once a directory fsync that started after this call has
// finished, with that fsync's error.
func (d *dirSyncer) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending == nil {
		d.pending = new(syncBatch)
	}
	b := d.pending
	for !b.done {
		if d.running {
			d.cond.Wait()
			continue
		}
		// Lead: b's members have all made their renames, and callers
		// from now on join a new batch.
		d.running = true
		d.pending = nil
		d.fsyncs++
		d.mu.Unlock()
		err := d.sync()
		d.mu.Lock()
		b.done, b.err = true, err
		d.running = false
		d.cond.Broadcast()
	}
	return b.err
}
