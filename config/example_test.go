package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleDocumentsEveryKey keeps relay.toml.example in sync with the
// configuration types: every key relay reads appears in it, and it holds
// no key relay does not know.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../relay.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	documented := exampleKeys(string(data))
	types := map[string]any{
		"server": Server{}, "queue": Queue{}, "admin": Admin{}, "users": User{},
		"routes": Route{}, "profiles": Profile{}, "oauth2_clients": OAuth2Client{},
	}
	for table, v := range types {
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			key := strings.Split(rt.Field(i).Tag.Get("toml"), ",")[0]
			if key == "" || key == "-" {
				continue
			}
			if !documented[table][key] {
				t.Errorf("relay.toml.example does not document %s.%s in its [%s] table", table, key, table)
			}
		}
	}

	// Parse reads nothing the example names outside itself (secret files,
	// environment variables), so the example must parse without a problem.
	if _, err := Parse("relay.toml.example", data); err != nil {
		t.Errorf("relay.toml.example:\n%v", err)
	}
}

// exampleKeys lists the keys the example sets or shows in a comment
// ("# key = ..."), per table: a key counts only in the table it stands in.
// A sub-table header such as [profiles.refresh_token_params] documents the
// key refresh_token_params of its parent table.
func exampleKeys(text string) map[string]map[string]bool {
	header := regexp.MustCompile(`^\[\[?([a-z0-9_.]+)\]\]?`)
	keyLine := regexp.MustCompile(`^(?:#\s*)?([a-z0-9_]+)\s*=`)
	keys := make(map[string]map[string]bool)
	add := func(table, key string) {
		if keys[table] == nil {
			keys[table] = make(map[string]bool)
		}
		keys[table][key] = true
	}
	table := ""
	for _, line := range strings.Split(text, "\n") {
		if m := header.FindStringSubmatch(line); m != nil {
			table = m[1]
			if parent, sub, ok := strings.Cut(table, "."); ok {
				add(parent, sub)
			}
			continue
		}
		if m := keyLine.FindStringSubmatch(line); m != nil && table != "" {
			add(table, m[1])
		}
	}
	return keys
}
