package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTextLogsInTheJournal: when stderr is the journal's stream, text
// lines leave the time to journald; on any other stream they keep it.
func TestTextLogsInTheJournal(t *testing.T) {
	dir := t.TempDir()
	journal, _ := os.Create(filepath.Join(dir, "journal"))
	other, _ := os.Create(filepath.Join(dir, "other"))
	defer journal.Close()
	defer other.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(journal.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	for _, f := range []*os.File{journal, other} {
		logger, err := newLogger(f, "text", 0)
		if err != nil {
			t.Fatal(err)
		}
		logger.Info("delivered", "id", "X")
	}
	j, _ := os.ReadFile(journal.Name())
	o, _ := os.ReadFile(other.Name())
	if strings.Contains(string(j), "time=") || !strings.HasPrefix(string(j), "level=INFO msg=delivered id=X") {
		t.Errorf("journal line = %q; want no time", j)
	}
	if !strings.HasPrefix(string(o), "time=") {
		t.Errorf("other line = %q; want the time", o)
	}
}
