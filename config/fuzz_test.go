package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/relaymail/relay/config"
)

// FuzzParse feeds the loader real configurations, good and bad, and their
// mutations. It must never panic, must return either a *Config or a
// *config.Error, and a Config it returns must be whole: every profile a
// user, a route or default_profile names exists.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../testdata/config/*/*.toml")
	if len(files) == 0 {
		f.Fatal("no seed files under ../testdata/config")
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add("")
	f.Add("[[profiles]]\nname = \"a\"\nkind = \"maildir\"\npath = \"/tmp/m\"\n")

	f.Fuzz(func(t *testing.T, doc string) {
		c, err := config.Parse("fuzz.toml", []byte(doc))
		if err != nil {
			var cerr *config.Error
			if c != nil || !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("Parse(%q) = %v, %v; want nil and a *config.Error with problems", doc, c, err)
			}
			for _, p := range cerr.Problems {
				if p.File != "fuzz.toml" || p.Msg == "" {
					t.Fatalf("Parse(%q): problem %#v; want file fuzz.toml and a message", doc, p)
				}
			}
			_ = cerr.Error()
			return
		}
		if c == nil {
			t.Fatalf("Parse(%q) = nil, nil; want a Config or an error", doc)
		}
		if len(c.Profiles) == 0 {
			t.Fatalf("Parse(%q): a Config without profiles", doc)
		}
		if d := c.Server.DefaultProfile; d != "" && c.Profile(d) == nil {
			t.Fatalf("Parse(%q): default_profile %q is not a profile", doc, d)
		}
		for _, u := range c.Users {
			if c.Profile(u.Profile) == nil {
				t.Fatalf("Parse(%q): user %q names missing profile %q", doc, u.Name, u.Profile)
			}
		}
		for _, r := range c.Routes {
			if c.Profile(r.Profile) == nil {
				t.Fatalf("Parse(%q): route %q names missing profile %q", doc, r.Sender, r.Profile)
			}
		}
		for _, p := range c.Profiles {
			if p.IsOAuth2() && p.Client == nil {
				t.Fatalf("Parse(%q): OAuth2 profile %q without its client", doc, p.Name)
			}
			if p.Kind == config.KindSMTP && len(p.TLSVersions) == 0 {
				t.Fatalf("Parse(%q): profile %q allows no TLS version", doc, p.Name)
			}
			if p.UseSSL && p.UseSTARTTLS {
				t.Fatalf("Parse(%q): profile %q has both use_ssl and use_starttls", doc, p.Name)
			}
		}
	})
}

// FuzzPattern checks Match against a regular expression built from the
// same pattern.
func FuzzPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"alarms@plant.example.com", "Alarms@Plant.Example.com"},
		{"*@plant.example.com", "pump7@plant.example.com"},
		{"*", ""},
		{"a*b*c", "axxbyyc"},
		{"ab*ba", "aba"},
		{"*@*.example.com", "x@example.com"},
		{"İ*", "i̇x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, addr string) {
		p, err := config.ParsePattern(pattern)
		if err != nil {
			return
		}
		// On valid UTF-8: removing a star may join two halves of a
		// broken character into a valid one.
		if utf8.ValidString(pattern) && !p.Match(strings.ReplaceAll(pattern, "*", "")) {
			t.Errorf("ParsePattern(%q).Match(%q) = false; want true (each * matches nothing)", pattern, strings.ReplaceAll(pattern, "*", ""))
		}
		var parts []string
		for _, part := range strings.Split(strings.ToLower(pattern), "*") {
			parts = append(parts, regexp.QuoteMeta(part))
		}
		re := regexp.MustCompile(`(?s)^` + strings.Join(parts, ".*") + `$`)
		want := re.MatchString(strings.ToLower(addr))
		if got := p.Match(addr); got != want {
			t.Errorf("ParsePattern(%q).Match(%q) = %v; want %v", pattern, addr, got, want)
		}
	})
}
