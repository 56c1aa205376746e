package oauth

import (
	"testing"
)

func TestFileName(t *testing.T) {
	for in, want := range map[string]string{
		"office365":  "office365.json",
		"gmail-2_b":  "gmail-2_b.json",
		"a.b":        "a.b.json",
		".hidden":    "%2Ehidden.json",
		"../x":       "%2E.%2Fx.json",
		"a b":        "a%20b.json",
		"ü":          "%C3%BC.json",
		"a%2Ehidden": "a%252Ehidden.json",
	} {
		if got := fileName(in); got != want {
			t.Errorf("fileName(%q) = %q; want %q", in, got, want)
		}
	}
}
