package spool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relaymail/relay/internal/syncdir"
)

// Errors returned by the spool; test for them with errors.Is.
var (
	ErrNotFound = errors.New("no such message in the spool")
	ErrBadID    = errors.New("malformed queue id")
	ErrLocked   = errors.New("spool is in use by another process")
	ErrClosed   = errors.New("spool is closed")
)

// Options tune a Spool. The zero value is ready for production use.
type Options struct {
	Logger *slog.Logger     // sweeps and quarantines are logged here; nil: discarded
	Now    func() time.Time // the clock for arrival times and IDs; nil: time.Now

	// NoSync skips every fsync. For tests and dry runs only: a crash of the
	// machine may then lose mail that was acknowledged.
	NoSync bool
}

// Names inside the spool directory; see the package documentation.
const (
	lockName       = "lock"
	queueName      = "queue"
	quarantineName = "quarantine"
	msgSuffix      = ".mail" // a message: envelope line, then the message
	envSuffix      = ".json" // its envelope once updated
	tmpSuffix      = ".tmp"
)

// Spool is an open spool directory. Its methods may be called from many
// goroutines at once.
type Spool struct {
	dir        string
	queue      string // dir/queue
	quarantine string // dir/quarantine
	log        *slog.Logger
	now        func() time.Time
	noSync     bool

	lock   *os.File // holds the flock
	qdir   *os.File // queue/, for directory fsyncs
	syncer *dirSyncer
	ids    idGen
	tmpSeq atomic.Uint64 // makes temp envelope names unique

	// ops is held shared by every operation that touches files and
	// exclusively by Close, which thus waits for them.
	ops    sync.RWMutex
	closed bool // guarded by ops

	// mu guards the index, and orders the renames and removals of
	// ID.json files with it so that the index always matches the disk.
	mu    sync.Mutex
	index map[string]entry
	// Recycled files (recycle.go), guarded by mu: free is the pool,
	// recycling counts renames into it under way, reading counts the
	// open readers of each message.
	free      []string
	recycling int
	reading   map[string]int
}

// entry is a queued message in the index.
type entry struct {
	env  *Envelope
	off  int64 // where the message starts in its file (after the envelope line)
	json bool  // ID.json exists and holds env
}

// Open opens the spool in dir, creating its layout when missing (directories
// 0700). It takes the spool's lock, deletes temp files left by a crash,
// moves messages it cannot read to quarantine/ (logging each), and loads
// every queued envelope, from ID.json when a message has one, else from the
// envelope line of ID.mail. It fails with ErrLocked when another process
// has the spool open, and refuses a spool file written in a format version
// it does not know.
func Open(dir string, opts Options) (*Spool, error) {
	s := &Spool{
		dir:        dir,
		queue:      filepath.Join(dir, queueName),
		quarantine: filepath.Join(dir, quarantineName),
		log:        opts.Logger,
		now:        opts.Now,
		noSync:     opts.NoSync,
		index:      make(map[string]entry),
		reading:    make(map[string]int),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "spool")
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.open(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("spool: open %s: %w", dir, err)
	}
	s.log.Info("spool opened", "dir", dir, "messages", len(s.index))
	return s, nil
}

func (s *Spool) open() error {
	for _, d := range []string{s.dir, s.queue, s.quarantine} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	var err error
	s.lock, err = os.OpenFile(filepath.Join(s.dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := lockFile(s.lock); err != nil {
		return err
	}
	s.qdir, err = os.Open(s.queue)
	if err != nil {
		return err
	}
	s.syncer = newDirSyncer(func() error { return syncdir.File(s.qdir) })
	if err := s.scan(); err != nil {
		return err
	}
	if s.noSync {
		return nil
	}
	// Make the layout and the sweep durable before anything is queued.
	for _, d := range []string{filepath.Dir(s.dir), s.dir, s.quarantine, s.queue} {
		if err := syncdir.Path(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spool) msgPath(id string) string    { return filepath.Join(s.queue, id+msgSuffix) }
func (s *Spool) tmpMsgPath(id string) string { return filepath.Join(s.queue, id+tmpSuffix) }
func (s *Spool) envPath(id string) string    { return filepath.Join(s.queue, id+envSuffix) }

// tmpPath is a new temp name for an envelope being written.
func (s *Spool) tmpPath(id string) string {
	return filepath.Join(s.queue, id+"."+strconv.FormatUint(s.tmpSeq.Add(1), 10)+tmpSuffix)
}

// syncQueue makes every rename in queue/ made before the call durable.
func (s *Spool) syncQueue() error {
	if s.noSync {
		return nil
	}
	if err := s.syncer.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.queue, err)
	}
	return nil
}

// writeFile creates name (which must not exist) holding data, fsynced; on
// error nothing is left.
func (s *Spool) writeFile(name string, data []byte) error {
	f, err := createExcl(name)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && !s.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

// rename is os.Rename without its Lstat of the target, which the spool
// never needs: one system call fewer per Commit and Update.
func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// begin starts an operation that touches files; end it with s.ops.RUnlock.
func (s *Spool) begin() error {
	s.ops.RLock()
	if s.closed {
		s.ops.RUnlock()
		return ErrClosed
	}
	return nil
}

func checkID(op, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("spool: %s %q: %w", op, id, ErrBadID)
	}
	return nil
}

// Open opens a queued message for reading: the message as received,
// without the envelope line. The result also implements io.Seeker and
// io.ReaderAt, relative to the start of the message (to send it again on a
// retry); close it when done.
func (s *Spool) Open(id string) (io.ReadCloser, error) {
	if err := checkID("open", id); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.RUnlock()
	// The reader is counted in the look-up's critical section: a Remove
	// that takes the message out of the index after it then finds the
	// reader and deletes the file instead of recycling it under the
	// reader (recycle.go).
	s.mu.Lock()
	e, ok := s.index[id]
	var done func()
	if ok {
		done = s.trackLocked(id)
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("spool: open %s: %w", id, ErrNotFound)
	}
	f, err := openRead(s.msgPath(id))
	if errors.Is(err, fs.ErrNotExist) { // removed meanwhile
		done()
		return nil, fmt.Errorf("spool: open %s: %w", id, ErrNotFound)
	}
	if err != nil {
		done()
		return nil, fmt.Errorf("spool: open %s: %w", id, err)
	}
	return &message{io.NewSectionReader(f, e.off, e.env.Size), f, sync.OnceFunc(done)}, nil
}

// message is a queued message opened for reading.
type message struct {
	*io.SectionReader
	f    *os.File
	done func() // ends the reader's count (recycle.go)
}

func (m *message) Close() error {
	m.done()
	return m.f.Close()
}

// Envelope returns a copy of a queued message's envelope.
func (s *Spool) Envelope(id string) (*Envelope, error) {
	if err := checkID("envelope", id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.index[id]
	if !ok {
		return nil, fmt.Errorf("spool: envelope %s: %w", id, ErrNotFound)
	}
	return e.env.clone(), nil
}

// Update atomically replaces the envelope of the queued message env.ID, for
// attempts, next attempt, recipient states and last error; ID, Arrived and
// Size keep their stored values. It writes queue/ID.json, which wins over
// the envelope line of ID.mail from then on. When Update returns nil the new
// envelope is durable. Update of a message removed meanwhile fails with
// ErrNotFound and does not bring it back.
func (s *Spool) Update(ctx context.Context, env *Envelope) error {
	id := env.ID
	if err := checkID("update", id); err != nil {
		return err
	}
	if err := env.check(); err != nil {
		return fmt.Errorf("spool: update %s: %w", id, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spool: update %s: %w", id, err)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.RUnlock()

	s.mu.Lock()
	old, ok := s.index[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("spool: update %s: %w", id, ErrNotFound)
	}
	e := env.clone()
	e.Arrived, e.Size = old.env.Arrived, old.env.Size
	e.normalize()
	data, err := marshalEnvelope(e)
	if err != nil {
		return fmt.Errorf("spool: update %s: %w", id, err)
	}
	tmp := s.tmpPath(id)
	if err := s.writeFile(tmp, data); err != nil {
		return fmt.Errorf("spool: update %s: %w", id, err)
	}

	s.mu.Lock()
	cur, ok := s.index[id]
	if !ok {
		s.mu.Unlock()
		os.Remove(tmp)
		return fmt.Errorf("spool: update %s: %w", id, ErrNotFound)
	}
	err = rename(tmp, s.envPath(id))
	if err == nil {
		cur.env, cur.json = e, true
		s.index[id] = cur
	}
	s.mu.Unlock()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: update %s: %w", id, err)
	}
	if err := s.syncQueue(); err != nil {
		return fmt.Errorf("spool: update %s: %w", id, err)
	}
	return nil
}

// Remove takes a message out of the queue, delivered or deleted: first its
// ID.json if it has one, then its file. It does not wait for a directory
// fsync; after a crash a message removed just before may come back (and be
// delivered again, with its last envelope or the one it arrived with).
func (s *Spool) Remove(id string) error {
	if err := checkID("remove", id); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.RUnlock()
	s.mu.Lock()
	e, ok := s.index[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("spool: remove %s: %w", id, ErrNotFound)
	}
	if e.json {
		if err := os.Remove(s.envPath(id)); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("spool: remove %s: %w", id, err)
		}
	}
	delete(s.index, id)
	s.mu.Unlock()
	// The message is out of the index, so no one opens, updates or removes
	// it any more, and its ID is never used again by this process.
	if err := s.recycle(id, e.off+e.env.Size); err != nil {
		return fmt.Errorf("spool: remove %s: out of the queue, but its file is left and comes back at the next start: %w", id, err)
	}
	return nil
}

// List returns copies of the envelopes of every queued message, oldest
// first. It reads no files; it costs one copy per message.
func (s *Spool) List() ([]*Envelope, error) {
	s.mu.Lock()
	list := make([]*Envelope, 0, len(s.index))
	for _, e := range s.index {
		list = append(list, e.env.clone())
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b *Envelope) int {
		return cmp.Or(a.Arrived.Compare(b.Arrived), strings.Compare(a.ID, b.ID))
	})
	return list, nil
}

// Len returns the number of queued messages.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Oldest returns the arrival time of the oldest queued message, or the zero
// time when the queue is empty. It looks at every envelope in memory.
func (s *Spool) Oldest() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for _, e := range s.index {
		if oldest.IsZero() || e.env.Arrived.Before(oldest) {
			oldest = e.env.Arrived
		}
	}
	return oldest
}

// Close waits for operations in progress, then releases the spool's files
// and lock. Writers not yet committed fail to commit afterwards.
func (s *Spool) Close() error {
	s.ops.Lock()
	defer s.ops.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeFiles()
}

func (s *Spool) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{s.qdir, s.lock} { // the lock last
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
