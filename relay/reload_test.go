package relay

import (
	"reflect"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
)

func TestRestartOnly(t *testing.T) {
	base := config.Embedded()
	changed := *base
	changed.Server.Listen = "127.0.0.1:2626"
	changed.Server.MaxRecipients = 5
	changed.Server.DefaultProfile = "" // applied by a reload: not listed
	changed.Admin.Listen = "127.0.0.1:8026"
	got := strings.Join(RestartOnly(base, &changed), ",")
	if want := "server.listen,server.max_recipients,admin.listen"; got != want {
		t.Fatalf("RestartOnly = %q; want %q", got, want)
	}
	if got := RestartOnly(base, base); len(got) != 0 {
		t.Fatalf("RestartOnly(same) = %q; want none", got)
	}
}

// TestEverySettingHasAReloadClass fails when a key is added to [server] or
// [admin] without deciding whether a reload applies it.
func TestEverySettingHasAReloadClass(t *testing.T) {
	for _, tc := range []struct {
		table   string
		value   any
		classes map[string]reloadClass
	}{
		{"server", config.Server{}, serverKeys},
		{"admin", config.Admin{}, adminKeys},
	} {
		seen := make(map[string]bool)
		rt := reflect.TypeOf(tc.value)
		for i := 0; i < rt.NumField(); i++ {
			key := tomlKey(rt.Field(i))
			if key == "" {
				continue
			}
			seen[key] = true
			if tc.classes[key] == 0 {
				t.Errorf("%s.%s: say in reload.go whether a reload applies it", tc.table, key)
			}
		}
		for key := range tc.classes {
			if !seen[key] {
				t.Errorf("reload.go classifies %s.%s, which config does not have", tc.table, key)
			}
		}
	}
}
