package spool

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func freeFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, queueName, freePrefix+"*"+tmpSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRecycledFileHoldsOnlyTheNewMessage: a removed message's file becomes
// the next message's, and holds exactly that message, shorter or longer
// than the one before, through a restart too; no new inode is made.
func TestRecycledFileHoldsOnlyTheNewMessage(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	long := bytes.Repeat([]byte("0123456789abcdef long line of the first message\r\n"), 2000) // ~100 KB
	first := commit(t, s, long, testEnvelope())
	ino := inode(t, s.msgPath(first))
	if err := s.Remove(first); err != nil {
		t.Fatal(err)
	}
	if n := len(freeFiles(t, dir)); n != 1 {
		t.Fatalf("after Remove, %d recycled files; want 1", n)
	}
	short := []byte("Subject: second\r\n\r\nshort\r\n")
	second := commit(t, s, short, testEnvelope())
	if got := readBody(t, s, second); !bytes.Equal(got, short) {
		t.Fatalf("second message reads %d bytes %q...; want %q", len(got), got[:min(len(got), 60)], short)
	}
	if ino != 0 && inode(t, s.msgPath(second)) != ino {
		t.Errorf("second message has a new inode; want the first one's file reused")
	}
	fi, _ := os.Stat(s.msgPath(second))
	e, _ := s.Envelope(second)
	s.mu.Lock()
	off := s.index[second].off
	s.mu.Unlock()
	if fi.Size() != off+e.Size {
		t.Errorf("file is %d bytes; want %d (envelope line + message): the old message's tail is left", fi.Size(), off+e.Size)
	}
	if len(freeFiles(t, dir)) != 0 {
		t.Errorf("the pool still holds %v", freeFiles(t, dir))
	}
	// A longer message in a recycled file, then a restart: read from disk.
	if err := s.Remove(second); err != nil {
		t.Fatal(err)
	}
	third := commit(t, s, long, testEnvelope())
	s.Close()
	s = openSpool(t, dir, Options{})
	if got := readBody(t, s, third); !bytes.Equal(got, long) {
		t.Fatalf("after a restart the third message reads %d bytes; want %d", len(got), len(long))
	}
}

// TestRecyclingSparesReadersAndBigFiles: a message still open for reading
// is not recycled (its reader keeps reading it), nor is a big file; the
// pool is bounded; a restart deletes the pool without a log line about a
// crash.
func TestRecyclingSparesReadersAndBigFiles(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir, Options{})
	body := []byte("Subject: read while removed\r\n\r\nstill here\r\n")
	id := commit(t, s, body, testEnvelope())
	r, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	commit(t, s, []byte("Subject: other\r\n\r\nother message, other text\r\n"), testEnvelope())
	got := make([]byte, len(body))
	if _, err := r.(interface {
		ReadAt([]byte, int64) (int, error)
	}).ReadAt(got, 0); err != nil || !bytes.Equal(got, body) {
		t.Errorf("a reader of a removed message reads %q, %v; want %q", got, err, body)
	}
	r.Close()

	big := commit(t, s, bytes.Repeat([]byte("x"), recycleMaxFile+1), testEnvelope())
	if err := s.Remove(big); err != nil {
		t.Fatal(err)
	}
	if n := len(freeFiles(t, dir)); n != 0 {
		t.Errorf("a file over %d bytes was recycled (%d in the pool)", recycleMaxFile, n)
	}

	var ids []string
	for range recycleMax + 10 {
		ids = append(ids, commit(t, s, body, testEnvelope()))
	}
	for _, id := range ids {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(freeFiles(t, dir)); n != recycleMax {
		t.Errorf("%d files in the pool; want the bound, %d", n, recycleMax)
	}
	s.Close()
	var logs bytes.Buffer
	s = openSpool(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if n := len(freeFiles(t, dir)); n != 0 {
		t.Errorf("after a restart %d recycled files are left", n)
	}
	if strings.Contains(logs.String(), freePrefix) {
		t.Errorf("the restart logged the recycled files:\n%s", logs.String())
	}
}

// TestRemoveWhileOpening: a message removed while another goroutine opens
// it is either not found or read to its end as it was; its file is never
// recycled under a reader, to be overwritten by the next message. The race
// is between Open's look-up in the index and its count of the reader: the
// loop runs them side by side many times (bounded).
func TestRemoveWhileOpening(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{NoSync: true})
	type opened struct {
		r   io.ReadCloser
		err error
	}
	hits := 0
	var spin atomic.Int64
	for i := range 10000 {
		body := []byte(fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i))
		id := commit(t, s, body, testEnvelope())
		ch := make(chan opened, 1)
		var start atomic.Bool
		go func() {
			for !start.Load() {
			}
			r, err := s.Open(id)
			ch <- opened{r, err}
		}()
		start.Store(true)
		for range i % 100 * 20 { // Remove a little later each time
			spin.Add(1)
		}
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
		o := <-ch
		if o.err != nil {
			continue
		}
		s.mu.Lock()
		recycled := len(s.free)
		s.mu.Unlock()
		if recycled > 0 {
			hits++
			// The next message takes the file the reader still reads.
			commit(t, s, bytes.Repeat([]byte("x"), len(body)), testEnvelope())
		}
		got, err := io.ReadAll(o.r)
		o.r.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("iteration %d: a reader opened before Remove reads %q, %v; want %q (%d recycled under readers so far)", i, got, err, body, hits)
		}
	}
}
