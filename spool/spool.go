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
	bodySuffix     = ".eml"
	envSuffix      = ".json"
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
	// envelopes with it so that the index always matches the disk.
	mu      sync.Mutex
	index   map[string]*Envelope
	claimed map[string]bool
}

// Open opens the spool in dir, creating its layout when missing (directories
// 0700). It takes the spool's lock, deletes temp files and bodies without an
// envelope left by a crash, moves envelopes it cannot read to quarantine/
// (logging each), and loads every queued envelope. It fails with ErrLocked
// when another process has the spool open, and refuses an envelope written in
// a format version it does not know.
func Open(dir string, opts Options) (*Spool, error) {
	s := &Spool{
		dir:        dir,
		queue:      filepath.Join(dir, queueName),
		quarantine: filepath.Join(dir, quarantineName),
		log:        opts.Logger,
		now:        opts.Now,
		noSync:     opts.NoSync,
		index:      make(map[string]*Envelope),
		claimed:    make(map[string]bool),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
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
	s.syncer = newDirSyncer(s.qdir.Sync)
	if err := s.scan(); err != nil {
		return err
	}
	if s.noSync {
		return nil
	}
	// Make the layout and the sweep durable before anything is queued.
	for _, d := range []string{filepath.Dir(s.dir), s.dir, s.quarantine, s.queue} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// scan sweeps queue/ and loads its envelopes into the index.
func (s *Spool) scan() error {
	entries, err := os.ReadDir(s.queue)
	if err != nil {
		return err
	}
	bodies := make(map[string]int64) // id → size, for bodies not yet matched
	var envs []string
	for _, ent := range entries {
		name := ent.Name()
		id, ext, _ := strings.Cut(name, ".")
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			if err := os.Remove(filepath.Join(s.queue, name)); err != nil {
				return err
			}
			s.log.Info("spool: removed temp file left by a crash", "file", name)
		case !ValidID(id) || !ent.Type().IsRegular():
			s.log.Warn("spool: unknown entry in queue directory left alone", "file", name)
		case "."+ext == envSuffix:
			envs = append(envs, id)
		case "."+ext == bodySuffix:
			info, err := ent.Info()
			if err != nil {
				return err
			}
			bodies[id] = info.Size()
		default:
			s.log.Warn("spool: unknown entry in queue directory left alone", "file", name)
		}
	}
	for _, id := range envs {
		b, err := os.ReadFile(s.envPath(id))
		if err != nil {
			return err
		}
		env, err := unmarshalEnvelope(id, b)
		if errors.Is(err, errVersion) {
			return fmt.Errorf("envelope %s: %w", id, err)
		}
		size, hasBody := bodies[id]
		delete(bodies, id)
		switch {
		case err != nil:
			err = fmt.Errorf("unreadable envelope: %w", err)
		case !hasBody:
			err = errors.New("body missing")
		case size != env.Size:
			err = fmt.Errorf("body is %d bytes, envelope says %d", size, env.Size)
		}
		if err != nil {
			if qerr := s.quarantineMessage(id, hasBody, err); qerr != nil {
				return qerr
			}
			continue
		}
		s.index[id] = env
	}
	for id := range bodies {
		if err := os.Remove(s.bodyPath(id)); err != nil {
			return err
		}
		s.log.Info("spool: removed body without envelope left by a crash", "id", id)
	}
	return nil
}

// quarantineMessage moves a bad envelope, and its body if any, out of the
// queue into quarantine/ and logs why.
func (s *Spool) quarantineMessage(id string, hasBody bool, why error) error {
	names := []string{id + envSuffix}
	if hasBody {
		names = append(names, id+bodySuffix)
	}
	for _, name := range names {
		to := filepath.Join(s.quarantine, name)
		for i := 1; ; i++ { // never overwrite an earlier quarantined file
			if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
				break
			}
			to = filepath.Join(s.quarantine, name+"."+strconv.Itoa(i))
		}
		if err := os.Rename(filepath.Join(s.queue, name), to); err != nil {
			return fmt.Errorf("quarantine %s: %w", id, err)
		}
	}
	s.log.Error("spool: message quarantined, not delivered", "id", id, "reason", why.Error(),
		"dir", s.quarantine)
	return nil
}

func (s *Spool) bodyPath(id string) string { return filepath.Join(s.queue, id+bodySuffix) }
func (s *Spool) envPath(id string) string  { return filepath.Join(s.queue, id+envSuffix) }

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

func syncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
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

// Open opens the body of a queued message for reading. The result is an
// *os.File, so it can also seek (to send the message again on a retry).
func (s *Spool) Open(id string) (io.ReadCloser, error) {
	if err := checkID("open", id); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.ops.RUnlock()
	s.mu.Lock()
	_, ok := s.index[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("spool: open %s: %w", id, ErrNotFound)
	}
	f, err := os.Open(s.bodyPath(id))
	if errors.Is(err, fs.ErrNotExist) { // removed meanwhile
		return nil, fmt.Errorf("spool: open %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", id, err)
	}
	return f, nil
}

// Envelope returns a copy of a queued message's envelope.
func (s *Spool) Envelope(id string) (*Envelope, error) {
	if err := checkID("envelope", id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	env, ok := s.index[id]
	if !ok {
		return nil, fmt.Errorf("spool: envelope %s: %w", id, ErrNotFound)
	}
	return env.clone(), nil
}

// Update atomically replaces the envelope of the queued message env.ID, for
// attempts, next attempt, recipient states and last error; ID, Arrived and
// Size keep their stored values. When Update returns nil the new envelope is
// durable. Update of a message removed meanwhile fails with ErrNotFound and
// does not bring it back.
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
	e.Arrived, e.Size = old.Arrived, old.Size
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
	if _, ok := s.index[id]; !ok {
		s.mu.Unlock()
		os.Remove(tmp)
		return fmt.Errorf("spool: update %s: %w", id, ErrNotFound)
	}
	err = rename(tmp, s.envPath(id))
	if err == nil {
		s.index[id] = e
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
// envelope, then its body. It does not wait for a directory fsync; after a
// crash a message removed just before may come back (and be delivered again).
func (s *Spool) Remove(id string) error {
	if err := checkID("remove", id); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.ops.RUnlock()
	s.mu.Lock()
	if _, ok := s.index[id]; !ok {
		s.mu.Unlock()
		return fmt.Errorf("spool: remove %s: %w", id, ErrNotFound)
	}
	if err := os.Remove(s.envPath(id)); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("spool: remove %s: %w", id, err)
	}
	delete(s.index, id)
	delete(s.claimed, id)
	s.mu.Unlock()
	// The message is gone from the queue; a body left behind is swept by
	// the next Open.
	if err := os.Remove(s.bodyPath(id)); err != nil {
		s.log.Warn("spool: removing body", "id", id, "err", err)
	}
	return nil
}

// List returns copies of the envelopes of every queued message, oldest
// first. It reads no files; it costs one copy per message.
func (s *Spool) List() ([]*Envelope, error) {
	s.mu.Lock()
	list := make([]*Envelope, 0, len(s.index))
	for _, env := range s.index {
		list = append(list, env.clone())
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
	for _, env := range s.index {
		if oldest.IsZero() || env.Arrived.Before(oldest) {
			oldest = env.Arrived
		}
	}
	return oldest
}

// Claim marks a queued message as taken by a delivery worker, so that a
// second worker (or a second look at List) does not deliver it in parallel.
// It returns false when the message is already claimed or not queued.
// Claims live in memory only: after a restart every message is unclaimed.
func (s *Spool) Claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[id]; !ok || s.claimed[id] {
		return false
	}
	s.claimed[id] = true
	return true
}

// Release ends a claim made with Claim. Remove ends it too.
func (s *Spool) Release(id string) {
	s.mu.Lock()
	delete(s.claimed, id)
	s.mu.Unlock()
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
