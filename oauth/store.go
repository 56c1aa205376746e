package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/relaymail/relay/internal/syncdir"
)

// Record is what a Store keeps for one profile: its tokens and what the
// status pages show after a restart. It holds secrets; a Store must keep
// it from other users.
type Record struct {
	Profile string `json:"profile"`
	// Fingerprint identifies the settings the tokens were issued for (the
	// flow, client ID, token URL and scope); a record whose fingerprint
	// no longer matches the profile is not used.
	Fingerprint  string    `json:"fingerprint"`
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`   // zero: never expires
	Obtained     time.Time `json:"obtained,omitzero"` // when AccessToken arrived
	RefreshToken string    `json:"refresh_token,omitempty"`
	LastRefresh  time.Time `json:"last_refresh,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
}

// Store persists token records, one per profile. The Manager calls it
// for one profile at a time, so an implementation needs no locking of
// its own per profile; Save must be durable when it returns, because a
// rotated refresh token is saved before it is used. FileStore keeps
// records in a directory; instances that share refresh tokens would use
// a shared key-value store behind the same interface.
type Store interface {
	// Load returns the record for profile, or nil and no error when
	// there is none.
	Load(ctx context.Context, profile string) (*Record, error)
	// Save replaces the record for rec.Profile.
	Save(ctx context.Context, rec *Record) error
	// Delete removes the record for profile; no record is no error.
	Delete(ctx context.Context, profile string) error
}

// FileStore is a Store keeping one JSON file per profile in a directory
// of mode 0700, each file of mode 0600, replaced atomically.
type FileStore struct {
	Dir string
	// Warn, if set, is told about problems that do not stop the store,
	// such as a token file that others could read.
	Warn func(msg string, args ...any)
}

// NewFileStore returns a FileStore in dir (typically DATA_DIR/tokens). The
// directory is made on the first Save.
func NewFileStore(dir string) *FileStore { return &FileStore{Dir: dir} }

const recordSuffix = ".json"

// fileName maps a profile name to a file name. Config already forbids
// slashes and leading dots; escape anything unusual anyway so that no
// name can leave the directory or collide with a temporary file.
func fileName(profile string) string {
	var b strings.Builder
	for i := 0; i < len(profile); i++ {
		c := profile[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '@', c == '+', c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String() + recordSuffix
}

func (s *FileStore) path(profile string) string {
	return filepath.Join(s.Dir, fileName(profile))
}

// Load reads the record for profile. A file readable by group or others
// is tightened to 0600, with a warning.
func (s *FileStore) Load(_ context.Context, profile string) (*Record, error) {
	p := s.path(profile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token store: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.warn("token file was readable by other users; set its mode to 0600", "path", p, "mode", fi.Mode().Perm().String())
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("token store: %w", err)
		}
	}
	var rec Record
	dec := json.NewDecoder(f)
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("token store: %s: %w", p, err)
	}
	if rec.Profile != profile {
		return nil, fmt.Errorf("token store: %s holds profile %q, not %q", p, rec.Profile, profile)
	}
	return &rec, nil
}

// Save writes rec atomically: a temporary file in the same directory,
// written and fsynced, renamed over the old file, then the directory
// fsynced so that the rename survives a crash.
func (s *FileStore) Save(_ context.Context, rec *Record) error {
	if err := s.mkdir(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	data = append(data, '\n')
	// CreateTemp makes the file with mode 0600.
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path(rec.Profile)); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	ok = true
	return s.syncDir()
}

// Delete removes the record for profile.
func (s *FileStore) Delete(_ context.Context, profile string) error {
	err := os.Remove(s.path(profile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	return s.syncDir()
}

// SweepTemp removes temporary files a crash left behind.
func (s *FileStore) SweepTemp() {
	matches, _ := filepath.Glob(filepath.Join(s.Dir, ".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

func (s *FileStore) mkdir() error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	fi, err := os.Stat(s.Dir)
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if fi.Mode().Perm() != 0o700 {
		// MkdirAll leaves an existing directory as it was, and the umask
		// may have narrowed a new one; tokens want exactly 0700.
		if err := os.Chmod(s.Dir, 0o700); err != nil {
			return fmt.Errorf("token store: %w", err)
		}
	}
	return nil
}

func (s *FileStore) syncDir() error {
	if err := syncdir.Path(s.Dir); err != nil {
		return fmt.Errorf("token store: sync %s: %w", s.Dir, err)
	}
	return nil
}

func (s *FileStore) warn(msg string, args ...any) {
	if s.Warn != nil {
		s.Warn(msg, args...)
	}
}
