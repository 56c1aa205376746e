package oauth_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relaymail/relay/oauth"
)

func TestFileStore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "tokens")
	var warnings []string
	s := oauth.NewFileStore(dir)
	s.Warn = func(msg string, args ...any) { warnings = append(warnings, msg) }

	if rec, err := s.Load(ctx, "p"); rec != nil || err != nil {
		t.Errorf("Load of a missing record = %v, %v; want nil, nil", rec, err)
	}
	want := &oauth.Record{Profile: "p", Fingerprint: "f", AccessToken: "a", RefreshToken: "r",
		Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), LastError: "invalid_grant: x"}
	if err := s.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, "p")
	if err != nil || got.AccessToken != "a" || got.RefreshToken != "r" || !got.Expiry.Equal(want.Expiry) || got.LastError != want.LastError {
		t.Errorf("Load after Save = %+v, %v", got, err)
	}

	// A file others may read is tightened, with a warning.
	file := filepath.Join(dir, "p.json")
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 || len(warnings) != 1 {
		t.Errorf("mode %v, warnings %q; want 0600 and one warning", fi.Mode().Perm(), warnings)
	}
	// So is a directory others may enter.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, want); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v; want 0700", fi.Mode().Perm())
	}

	// A crash between write and rename leaves a temporary file; it is
	// swept, and never read as a record.
	tmp := filepath.Join(dir, ".tmp-123")
	os.WriteFile(tmp, []byte("partial"), 0o600)
	s.SweepTemp()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Error("SweepTemp left the temporary file")
	}

	if err := os.WriteFile(file, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "p"); err == nil {
		t.Error("Load of a corrupt file succeeded")
	}
	if err := s.Delete(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "p"); err != nil {
		t.Errorf("Delete of a missing record = %v", err)
	}
}
