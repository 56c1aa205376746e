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
	text := string(data)
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
			re := regexp.MustCompile(`(?m)^(#\s*)?\[?` + regexp.QuoteMeta(key) + `(\s*=|\])`)
			if table == "profiles" && strings.HasSuffix(key, "_params") {
				re = regexp.MustCompile(`(?m)^\[profiles\.` + regexp.QuoteMeta(key) + `\]`)
			}
			if !re.MatchString(text) {
				t.Errorf("relay.toml.example does not document %s.%s", table, key)
			}
		}
	}

	t.Setenv("RELAY_GOOGLE_SECRET", "x")
	_, err = Parse("relay.toml.example", data)
	if ce, ok := err.(*Error); ok {
		for _, p := range ce.Problems {
			if strings.Contains(p.Msg, "unknown key") || p.Key == "" {
				t.Errorf("relay.toml.example: %s", p)
			}
		}
	} else if err != nil {
		t.Fatal(err)
	}
}
