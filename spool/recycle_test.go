package spool

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
