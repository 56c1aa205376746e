package oauth_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

func TestCorruptTokenFileDoesNotStopManager(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	os.MkdirAll(filepath.Join(e.dir, "tokens"), 0o700)
	os.WriteFile(filepath.Join(e.dir, "tokens", "o365.json"), []byte("{broken"), 0o600)
	m := e.manager(e.config(prof{Name: "o365"}))
	token(t, m.Source("o365"))
	if !strings.Contains(e.logs.String(), "cannot load the persisted tokens") {
		t.Error("the corrupt file was not logged")
	}
}

type failingStore struct{}

func (failingStore) Load(context.Context, string) (*oauth.Record, error) { return nil, nil }
func (failingStore) Save(context.Context, *oauth.Record) error {
	return errors.New("disk full")
}
func (failingStore) Delete(context.Context, string) error { return nil }

func TestUnsavableTokensStillServe(t *testing.T) {
	e := newEnv(t, testpeer.AuthOptions{})
	m, err := oauth.NewManager(e.config(prof{Name: "o365"}), oauth.Options{
		Store:  failingStore{},
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	token(t, m.Source("o365"))
	if !strings.Contains(e.logs.String(), "disk full") {
		t.Error("the failed save was not logged")
	}
}
