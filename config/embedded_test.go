package config_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/relaymail/relay/config"
)

func TestEmbedded(t *testing.T) {
	c := config.Embedded()
	if c.File != config.EmbeddedName {
		t.Errorf("Embedded().File = %q; want %q", c.File, config.EmbeddedName)
	}
	if c.Server.Listen != "127.0.0.1:2525" {
		t.Errorf("Embedded().Server.Listen = %q; want %q", c.Server.Listen, "127.0.0.1:2525")
	}
	if c.Server.DefaultProfile != "local" {
		t.Errorf("Embedded().Server.DefaultProfile = %q; want %q", c.Server.DefaultProfile, "local")
	}
	p := c.Profile("local")
	if p == nil {
		t.Fatalf("Embedded().Profile(%q) = nil; want the built-in maildir profile", "local")
	}
	if p.Kind != config.KindMaildir || p.Path != "./relay-data/maildir" {
		t.Errorf("Embedded() profile local: kind %q, path %q; want %q, %q", p.Kind, p.Path, config.KindMaildir, "./relay-data/maildir")
	}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		a := netip.MustParseAddr(addr)
		ok := false
		for _, n := range c.Server.Networks {
			ok = ok || n.Contains(a)
		}
		if !ok {
			t.Errorf("Embedded().Server.Networks = %v; want one containing %s", c.Server.Networks, addr)
		}
	}
	for _, addr := range []string{"192.168.1.10", "2001:db8::1"} {
		for _, n := range c.Server.Networks {
			if n.Contains(netip.MustParseAddr(addr)) {
				t.Errorf("Embedded().Server.Networks = %v; want none containing %s", c.Server.Networks, addr)
			}
		}
	}
	if len(c.Users) != 0 || len(c.Routes) != 0 || len(c.OAuth2Clients) != 0 {
		t.Errorf("Embedded() has %d users, %d routes, %d OAuth2 clients; want none", len(c.Users), len(c.Routes), len(c.OAuth2Clients))
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Embedded().Warnings = %q; want none", c.Warnings)
	}
	if host, _, err := net.SplitHostPort(c.Admin.Listen); err != nil || !config.IsLoopbackHost(host) {
		t.Errorf("Embedded().Admin.Listen = %q; want a loopback address", c.Admin.Listen)
	}
}
