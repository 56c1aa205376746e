package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestLineIndex(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want map[string]int // path → line; 0: line(path) must find nothing
	}{
		{
			name: "tables and arrays of tables",
			doc: `[server]
listen = "127.0.0.1:2525"

[[profiles]]
name = "a"

[[profiles]]
name = "b"
port = 587

[profiles.refresh_token_params]
prompt = "consent"

[[users]]
name = "scada"
`,
			want: map[string]int{
				"server":                           1,
				"server.listen":                    2,
				"profiles[0]":                      4,
				"profiles[0].name":                 5,
				"profiles[1]":                      7,
				"profiles[1].name":                 8,
				"profiles[1].port":                 9,
				"profiles[1].refresh_token_params": 11,
				"profiles[1].refresh_token_params.prompt": 12,
				"users[0]":      14,
				"users[0].name": 15,
				// A key the document does not have: its table's line.
				"profiles[0].port":  4,
				"users[0].profile":  14,
				"server.data_dir":   1,
				"queue.min_backoff": 0,
				"profiles[2]":       0,
			},
		},
		{
			name: "comments",
			doc: `# [[profiles]]
# name = "commented"
[[profiles]] # the first
# port = 1
name = "a" # name = "b"
  # [server]
port = 25
`,
			want: map[string]int{
				"profiles[0]":      3,
				"profiles[0].name": 5,
				"profiles[0].port": 7,
				"profiles[1]":      0,
				"server":           0,
			},
		},
		{
			name: "multi-line arrays",
			doc: `[server]
allow_unauthenticated = [
  "127.0.0.0/8", # loopback ]
  "10.0.0.0/8",  # [[profiles]]
  "]",
]
default_profile = "a"

[[users]]
name = "scada"
allowed_senders = [
  [
    "nested",
  ],
  "*@plant.example.com",
]
profile = "a"
`,
			want: map[string]int{
				"server.allow_unauthenticated": 2,
				"server.default_profile":       7,
				"profiles[0]":                  0,
				"users[0]":                     9,
				"users[0].allowed_senders":     11,
				"users[0].profile":             17,
			},
		},
		{
			name: "multi-line strings",
			doc: `[[profiles]]
name = "a"
description = """
[[profiles]]
name = "fake"
port = 1
"""
port = 2
helo_name = '''
[server]
listen = "x"'''
username = """single line"""
scope = """ends "quoted" """
debug = true
path = '''
''' # done
kind = "maildir"
`,
			want: map[string]int{
				"profiles[0]":             1,
				"profiles[0].description": 3,
				"profiles[0].port":        8,
				"profiles[0].helo_name":   9,
				"profiles[0].username":    12,
				"profiles[0].scope":       13,
				"profiles[0].debug":       14,
				"profiles[0].path":        15,
				"profiles[0].kind":        17,
				"profiles[1]":             0,
				"server":                  0,
				"server.listen":           0,
			},
		},
		{
			name: "quoted and dotted keys",
			doc: `[ "server" ]
"listen" = "127.0.0.1:2525"
'hostname' = "relay"

[[ profiles ]]
"name" = "a"
refresh_token_params.prompt = "consent"
authorization_request_params . "access_type" = "offline"

[profiles."client_credentials_token_params"]
resource = "x"
`,
			want: map[string]int{
				"server":                           1,
				"server.listen":                    2,
				"server.hostname":                  3,
				"profiles[0]":                      5,
				"profiles[0].name":                 6,
				"profiles[0].refresh_token_params": 7,
				"profiles[0].refresh_token_params.prompt":              7,
				"profiles[0].authorization_request_params":             8,
				"profiles[0].authorization_request_params.access_type": 8,
				"profiles[0].client_credentials_token_params":          10,
				"profiles[0].client_credentials_token_params.resource": 11,
			},
		},
		{
			name: "escaped quotes in multi-line strings",
			doc: `[[profiles]]
name = "a"
description = """one \""" two
[[profiles]]
"""
port = 2
scope = """a\\"""
debug = true
path = """
\"""[[profiles]]\"""
"""
kind = "maildir"
`,
			want: map[string]int{
				"profiles[0].description": 3,
				"profiles[0].port":        6,
				"profiles[0].scope":       7,
				"profiles[0].debug":       8,
				"profiles[0].path":        9,
				"profiles[0].kind":        12,
				"profiles[1]":             0,
			},
		},
		{
			// TOML 1.1, which BurntSushi/toml reads: inline tables may
			// span lines.
			name: "multi-line inline tables",
			doc: `[[profiles]]
name = "a"
client_credentials_token_params = {
  port = "1",
  nested = { name = "x",
    debug = "y" },
}
port = 2
debug = true
users = [
  { name = "x" },
  {
    name = "y",
  },
]
hostname = "h"
`,
			want: map[string]int{
				"profiles[0].name": 2,
				"profiles[0].client_credentials_token_params": 3,
				"profiles[0].port":                            8,
				"profiles[0].debug":                           9,
				"profiles[0].users":                           10,
				"profiles[0].hostname":                        16,
				"users":                                       0,
			},
		},
		{
			name: "byte order mark",
			doc:  "\ufeff[server]\nlisten = \"x\"\n[[profiles]]\nname = \"a\"\n",
			want: map[string]int{
				"server":           1,
				"server.listen":    2,
				"profiles[0]":      3,
				"profiles[0].name": 4,
			},
		},
		{
			name: "CRLF line endings",
			doc:  "[server]\r\nlisten = \"x\"\r\n\r\n[[profiles]]\r\nname = \"a\"\r\ndescription = \"\"\"\r\n[[profiles]]\r\n\"\"\"\r\nport = 1\r\n",
			want: map[string]int{
				"server.listen":    2,
				"profiles[0]":      4,
				"profiles[0].name": 5,
				"profiles[0].port": 9,
				"profiles[1]":      0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The documents are valid TOML: the index need not be
			// right about others, Parse rejects them first.
			var v map[string]any
			if _, err := toml.Decode(tt.doc, &v); err != nil {
				t.Fatalf("toml.Decode(%s) = %v; want a valid document", tt.name, err)
			}
			ix := newLineIndex(tt.doc)
			for path, want := range tt.want {
				if got := ix.line(path); got != want {
					t.Errorf("newLineIndex(%s).line(%q) = %d; want %d\n%s", tt.name, path, got, want, numbered(tt.doc))
				}
			}
		})
	}
}

func TestLineIndexUnindexed(t *testing.T) {
	doc := `[[profiles]]
name = "a"
bogus = 1

[[profiles]]
name = "b"

[[profiles]]
bogus = 2
`
	ix := newLineIndex(doc)
	got := ix.unindexed("profiles.bogus")
	want := []indexedKey{{"profiles[0].bogus", 3}, {"profiles[2].bogus", 9}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("unindexed(%q) = %v; want %v", "profiles.bogus", got, want)
	}
	for _, tt := range []struct {
		key  string
		line int
		want string
	}{
		{"profiles.bogus", 3, "profiles[0].bogus"},
		{"profiles.bogus", 8, "profiles[0].bogus"},
		{"profiles.bogus", 9, "profiles[2].bogus"},
		{"profiles.name", 7, "profiles[1].name"},
		{"profiles.bogus", 2, "profiles.bogus"},
		{"server.listen", 5, "server.listen"},
	} {
		if got := ix.indexed(tt.key, tt.line); got != tt.want {
			t.Errorf("indexed(%q, %d) = %q; want %q", tt.key, tt.line, got, tt.want)
		}
	}
}

// numbered returns doc with line numbers, for failure messages.
func numbered(doc string) string {
	var b strings.Builder
	for i, l := range strings.Split(doc, "\n") {
		fmt.Fprintf(&b, "%3d| %s\n", i+1, l)
	}
	return b.String()
}
