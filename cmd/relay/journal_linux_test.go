package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/relaymail/relay/config"
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
	if strings.Contains(string(j), "time=") || !strings.HasPrefix(string(j), "<6>level=INFO msg=delivered id=X") {
		t.Errorf("journal line = %q; want its priority and no time", j)
	}
	if !strings.HasPrefix(string(o), "time=") {
		t.Errorf("other line = %q; want the time", o)
	}
}

// TestJournalPriorities: in the journal every line starts with the syslog
// priority of its level, which journald takes off and stores, in the text
// and JSON formats, from loggers made WithAttrs and WithGroup too, and on
// configuration errors; elsewhere no line has one.
func TestJournalPriorities(t *testing.T) {
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
	for _, format := range []string{"text", "json"} {
		for _, f := range []*os.File{journal, other} {
			logger, err := newLogger(f, format, slog.LevelDebug)
			if err != nil {
				t.Fatal(err)
			}
			logger.Debug("debug")
			logger.Info("delivered", "id", "X")
			logger.With("component", "queue").Warn("deferred", "id", "Y")
			logger.WithGroup("g").Error("refused", "k", "v\nw")
		}
	}
	printConfigError(journal, &config.Error{Problems: []config.Problem{{File: "/etc/relay/relay.toml", Line: 7, Msg: "bad"}}})
	printConfigError(other, &config.Error{Problems: []config.Problem{{File: "/etc/relay/relay.toml", Line: 7, Msg: "bad"}}})

	j, _ := os.ReadFile(journal.Name())
	lines := strings.Split(strings.TrimSuffix(string(j), "\n"), "\n")
	want := []string{
		"<7>level=DEBUG msg=debug",
		"<6>level=INFO msg=delivered id=X",
		"<4>level=WARN msg=deferred component=queue id=Y",
		`<3>level=ERROR msg=refused g.k="v\nw"`,
		`<7>{"time":`,
		`<6>{"time":`,
		`<4>{"time":`,
		`<3>{"time":`,
		"<3>/etc/relay/relay.toml:7:",
	}
	if len(lines) != len(want) {
		t.Fatalf("journal holds %d lines; want %d:\n%s", len(lines), len(want), j)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("journal line %d = %q; want it to start with %q", i+1, lines[i], w)
		}
	}
	o, _ := os.ReadFile(other.Name())
	for _, line := range strings.Split(strings.TrimSuffix(string(o), "\n"), "\n") {
		if strings.HasPrefix(line, "<") {
			t.Errorf("line not in the journal = %q; want no priority", line)
		}
	}
}
