package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
)

// wantRe is the first line of every file in testdata/config/bad: the one
// problem Load must report, as "# want: LINE: KEY: substring of message".
var wantRe = regexp.MustCompile(`^# want: (\d+): (\S+): (.+)$`)

// unsetVariable is named by a bad configuration and must not be set.
const unsetVariable = "RELAY_TEST_UNSET_VARIABLE"

func TestLoadBad(t *testing.T) {
	// t.Setenv restores the variable after the test; unset it meanwhile.
	t.Setenv(unsetVariable, "")
	os.Unsetenv(unsetVariable)
	// bcrypt, and so a user's password, stops at 72 bytes.
	t.Setenv("RELAY_TEST_LONG_PASSWORD", strings.Repeat("x", 73))

	files, err := filepath.Glob(filepath.Join(badDir, "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in %s: %v", badDir, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(strings.TrimPrefix(string(data), "\ufeff"), "\n")
			m := wantRe.FindStringSubmatch(strings.TrimSpace(first))
			if m == nil {
				t.Fatalf("%s: first line %q is not \"# want: LINE: KEY: substring\"", path, first)
			}
			line, _ := strconv.Atoi(m[1])
			want := config.Problem{File: path, Line: line, Key: m[2], Msg: m[3]}

			cfg, err := config.Load(path)
			if cfg != nil {
				t.Errorf("Load(%q) returned a *Config; want nil", path)
			}
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load(%q) = %v (%T); want a *config.Error with %v", path, err, err, want)
			}
			if !hasProblem(cerr, want) {
				t.Errorf("Load(%q) = %v; want %v", path, err, want)
			}
		})
	}
}

// hasProblem reports whether e holds a problem with want's file, line and
// key whose message contains want.Msg.
func hasProblem(e *config.Error, want config.Problem) bool {
	for _, p := range e.Problems {
		if p.File == want.File && p.Line == want.Line && p.Key == want.Key && strings.Contains(p.Msg, want.Msg) {
			return true
		}
	}
	return false
}

// writeConfig writes doc into a file in a new temporary directory.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadReportsEveryProblem checks that one pass over a file finds all
// its mistakes, and lists them in the order of their lines.
func TestLoadReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // "LINE KEY" of each problem, in order
	}{
		{
			name: "validation",
			doc: `[[routes]]
sender = "*@reports.example.com"
profile = "nosuch"

[queue]
min_backoff = "1h"
max_backoff = "1m"

[[profiles]]
name = "a"
hostname = "mail.example.com"
port = 0
use_ssl = true
use_starttls = true

[[profiles]]
name = "a"
kind = "mbox"

[[users]]
name = "scada"
password_hash = "plain"
profile = "a"

[server]
default_profile = "nosuch"
`,
			want: []string{
				"3 routes[0].profile",
				"7 queue.max_backoff",
				"12 profiles[0].port",
				"14 profiles[0].use_starttls",
				"17 profiles[1].name",
				"18 profiles[1].kind",
				"22 users[0].password_hash",
				"26 server.default_profile",
			},
		},
		{
			// Keys that do not decode are reported before validation.
			name: "decoding",
			doc: `[[profiles]]
name = "a"
hostname = "mail.example.com"
colour = "blue"

[[profiles]]
name = "b"
hostname = "mail.example.com"
port = "587"

[server]
lisen = "0.0.0.0:25"
`,
			want: []string{
				"4 profiles[0].colour",
				"9 profiles[1].port",
				"12 server.lisen",
			},
		},
		{
			// Each unknown key once, though it occurs in two profiles,
			// and an unknown table once, not again for its keys.
			name: "unknown keys in several elements",
			doc: `[[profiles]]
name = "a"
hostname = "mail.example.com"
colour = "blue"

[profiles.extra]
x = 1

[[profiles]]
name = "b"
hostname = "mail.example.com"
colour = "red"
`,
			want: []string{
				"4 profiles[0].colour",
				"6 profiles[0].extra",
				"12 profiles[1].colour",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.doc)
			cfg, err := config.Load(path)
			var cerr *config.Error
			if cfg != nil || !errors.As(err, &cerr) {
				t.Fatalf("Load(%q) = %v, %v; want nil, *config.Error", path, cfg, err)
			}
			var got []string
			for _, p := range cerr.Problems {
				if p.File != path {
					t.Errorf("Load(%q): problem %v names file %q; want %q", path, p, p.File, path)
				}
				got = append(got, strconv.Itoa(p.Line)+" "+p.Key)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Load(%q) = \n%v\nproblems at\n%s\nwant\n%s", path, err, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.toml")
	cfg, err := config.Load(path)
	var cerr *config.Error
	if cfg != nil || !errors.As(err, &cerr) || len(cerr.Problems) != 1 || cerr.Problems[0].File != path {
		t.Fatalf("Load(%q) = %v, %v; want nil and one problem naming the file", path, cfg, err)
	}
	if got := cerr.Error(); !strings.HasPrefix(got, path+": ") || !strings.Contains(got, "no such file") {
		t.Errorf("Load(%q) = %q; want %q", path, got, path+": cannot read the configuration: no such file or directory")
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    config.Problem
		want string
	}{
		{config.Problem{File: "relay.toml", Line: 7, Key: "profiles[1].port", Msg: "bad"}, "relay.toml:7: profiles[1].port: bad"},
		{config.Problem{File: "relay.toml", Key: "profiles", Msg: "none"}, "relay.toml: profiles: none"},
		{config.Problem{File: "relay.toml", Line: 3, Msg: "syntax"}, "relay.toml:3: syntax"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q; want %q", tt.p, got, tt.want)
		}
	}
	e := &config.Error{Problems: []config.Problem{tests[0].p, tests[1].p}}
	if got, want := e.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}
