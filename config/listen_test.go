package config_test

import (
	"testing"

	"github.com/relaymail/relay/config"
)

// TestDialAddr: a wildcard listen address of either family is reached on
// that family's loopback address; explicit hosts and every port are kept.
func TestDialAddr(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		// IPv4 wildcards.
		{":2525", "127.0.0.1:2525"},
		{"0.0.0.0:25", "127.0.0.1:25"},
		{"[::ffff:0.0.0.0]:2525", "127.0.0.1:2525"},
		// IPv6 wildcards.
		{"[::]:2525", "[::1]:2525"},
		{"[0:0:0:0:0:0:0:0]:8025", "[::1]:8025"},
		// Explicit addresses are kept.
		{"127.0.0.1:2525", "127.0.0.1:2525"},
		{"[::1]:2525", "[::1]:2525"},
		{"192.0.2.7:587", "192.0.2.7:587"},
		{"[2001:db8::7]:8025", "[2001:db8::7]:8025"},
		{"localhost:8025", "localhost:8025"},
		{"mail.example.com:25", "mail.example.com:25"},
		// The port is kept as written, a service name too.
		{":smtp", "127.0.0.1:smtp"},
		{"0.0.0.0:0", "127.0.0.1:0"},
	} {
		got, err := config.DialAddr(tc.listen)
		if err != nil || got != tc.want {
			t.Errorf("DialAddr(%q) = %q, %v; want %q", tc.listen, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "2525", "127.0.0.1", "::1:2525", "[::]"} {
		if got, err := config.DialAddr(bad); err == nil {
			t.Errorf("DialAddr(%q) = %q, nil; want an error (not host:port)", bad, got)
		}
	}
}
