package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Recovery: what Open does with queue/ before the spool is used.

// files is what queue/ holds for one ID.
type files struct{ msg, json bool }

// scan sweeps queue/ and loads its envelopes into the index.
func (s *Spool) scan() error {
	entries, err := os.ReadDir(s.queue)
	if err != nil {
		return err
	}
	found := make(map[string]*files)
	for _, ent := range entries {
		name := ent.Name()
		id, ext, _ := strings.Cut(name, ".")
		if strings.HasSuffix(name, tmpSuffix) {
			if err := os.Remove(filepath.Join(s.queue, name)); err != nil {
				return err
			}
			if !strings.HasPrefix(name, freePrefix) { // a recycled file: no news
				s.log.Info("removed temp file left by a crash", "file", name)
			}
			continue
		}
		if !ValidID(id) || !ent.Type().IsRegular() {
			s.log.Warn("unknown entry in queue directory left alone", "file", name)
			continue
		}
		have := found[id]
		if have == nil {
			have = new(files)
		}
		switch "." + ext {
		case msgSuffix:
			have.msg = true
		case envSuffix:
			have.json = true
		default:
			s.log.Warn("unknown entry in queue directory left alone", "file", name)
			continue
		}
		found[id] = have
	}
	ids := slices.Sorted(maps.Keys(found))
	for _, id := range ids {
		have := found[id]
		var (
			e   entry
			err error
		)
		if have.msg {
			e, err = s.load(id, have.json)
		} else {
			err = bad(errors.New("message file missing"))
		}
		var why *badMessage
		if errors.As(err, &why) {
			if qerr := s.quarantineMessage(id, have, why.err); qerr != nil {
				return qerr
			}
			continue
		}
		if errors.Is(err, errVersion) {
			return fmt.Errorf("message %s: %w", id, err)
		}
		if err != nil {
			return err
		}
		s.index[id] = e
	}
	return nil
}

// badMessage is a message that scan quarantines: its files are there but
// do not make a message.
type badMessage struct{ err error }

func (b *badMessage) Error() string { return b.err.Error() }

// bad marks err as a reason to quarantine, unless it is errVersion: a
// newer relay's mail stops Open instead.
func bad(err error) error {
	if errors.Is(err, errVersion) {
		return err
	}
	return &badMessage{err}
}

// load reads the envelope line of ID.mail and, when hasJSON, ID.json,
// which wins over it.
func (s *Spool) load(id string, hasJSON bool) (entry, error) {
	line, fileSize, err := readEnvLine(s.msgPath(id))
	if err != nil {
		return entry{}, err
	}
	e := entry{off: int64(len(line)), json: hasJSON}
	size := fileSize - e.off
	e.env, err = parseEnvLine(id, bytes.TrimSuffix(line, []byte("\r\n")))
	if err != nil {
		return entry{}, bad(fmt.Errorf("unreadable envelope line: %w", err))
	}
	if e.env.Size != size {
		return entry{}, bad(fmt.Errorf("message is %d bytes, its envelope line says %d", size, e.env.Size))
	}
	if hasJSON {
		b, err := os.ReadFile(s.envPath(id))
		if err != nil {
			return entry{}, err
		}
		e.env, err = unmarshalEnvelope(id, b)
		if err != nil {
			return entry{}, bad(fmt.Errorf("unreadable envelope %s: %w", id+envSuffix, err))
		}
		if e.env.Size != size {
			return entry{}, bad(fmt.Errorf("message is %d bytes, %s says %d", size, id+envSuffix, e.env.Size))
		}
	}
	return e, nil
}

// readEnvLine returns the first line of the file name, with its CRLF, and
// the file's size. A file that does not start with a line of at most
// maxEnvLine bytes ending in CRLF is a badMessage.
func readEnvLine(name string) (line []byte, size int64, err error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	buf := make([]byte, 0, 4096)
	for {
		k, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line = buf[:i+1]
			if !bytes.HasSuffix(line, []byte("\r\n")) {
				return nil, 0, bad(errors.New("the envelope line does not end in CRLF"))
			}
			return line, info.Size(), nil
		}
		if errors.Is(err, io.EOF) {
			return nil, 0, bad(errors.New("no envelope line"))
		}
		if err != nil {
			return nil, 0, err
		}
		if len(buf) >= maxEnvLine {
			return nil, 0, bad(fmt.Errorf("no envelope line in the first %d bytes", len(buf)))
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(2*len(buf), maxEnvLine)-len(buf))
		}
	}
}

// quarantineMessage moves the files of a message scan cannot use out of
// the queue into quarantine/ and logs why.
func (s *Spool) quarantineMessage(id string, have *files, why error) error {
	var names []string
	for _, f := range []struct {
		ok     bool
		suffix string
	}{{have.msg, msgSuffix}, {have.json, envSuffix}} {
		if f.ok {
			names = append(names, id+f.suffix)
		}
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
	s.log.Error("message quarantined, not delivered", "id", id, "reason", why.Error(),
		"dir", s.quarantine)
	return nil
}
