package syncdir

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPath: a directory syncs; a missing one is an error naming it.
func TestPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Path(dir); err != nil {
		t.Errorf("Path(%s) = %v; want nil", dir, err)
	}
	missing := filepath.Join(dir, "missing")
	if err := Path(missing); !os.IsNotExist(err) {
		t.Errorf("Path(%s) = %v; want a not-exist error", missing, err)
	}
}

// TestFile: an open directory syncs as often as asked, and a closed one
// is an error.
func TestFile(t *testing.T) {
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := File(d); err != nil {
			t.Fatalf("File, call %d: %v", i+1, err)
		}
	}
	d.Close()
	if err := File(d); err == nil {
		t.Error("File on a closed directory = nil; want an error")
	}
}
