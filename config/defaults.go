package config

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"time"
)

func defaultServer() Server {
	return Server{
		Listen:               "127.0.0.1:2525",
		Hostname:             "localhost",
		DataDir:              "./relay-data",
		MaxMessageBytes:      26214400, // 25 MiB, Office 365's and Gmail's own limit
		MaxRecipients:        100,
		MaxHeaderBytes:       1 << 20, // 1 MiB, Exim's header_maxsize
		ReadTimeout:          Duration(60 * time.Second),
		WriteTimeout:         Duration(60 * time.Second),
		AllowUnauthenticated: []string{"127.0.0.0/8", "::1/128"},
		// On a relay for legacy applications most clients share one
		// address (127.0.0.1), so the per-client cap is generous; Postfix
		// exempts its own networks from its cap of 50 altogether.
		MaxConnections:          200,
		MaxConnectionsPerClient: 100,
	}
}

func defaultQueue() Queue {
	// Postfix's schedule: minimal_backoff_time 300s, maximal_backoff_time
	// 3600s; bounce_queue_lifetime 5d.
	return Queue{
		MinBackoff:  Duration(5 * time.Minute),
		MaxBackoff:  Duration(time.Hour),
		MaxLifetime: Duration(120 * time.Hour),
	}
}

func defaultAdmin() Admin {
	return Admin{Listen: "127.0.0.1:8025"}
}

func defaultProfile() *Profile {
	return &Profile{
		Kind:                    KindSMTP,
		Port:                    25,                          // seed: default 25
		SMTPTimeout:             Duration(10 * time.Second),  // seed: default 10,000 ms
		SSLProtocols:            "TLSv1.2",                   // seed: default TLSv1.2
		MaxConnections:          4,                           // Office 365 allows 3-4 concurrent connections per mailbox
		AccessTokenTimeout:      Duration(120 * time.Second), // seed: default 120 s
		RefreshBeforeExpiration: Duration(300 * time.Second), // seed: default 300 s
	}
}

// tlsVersions are the names ssl_protocols accepts, as the seed writes them.
var tlsVersions = map[string]uint16{
	"tlsv1":   tls.VersionTLS10,
	"tlsv1.0": tls.VersionTLS10,
	"tlsv1.1": tls.VersionTLS11,
	"tlsv1.2": tls.VersionTLS12,
	"tlsv1.3": tls.VersionTLS13,
}

// TLSVersionName names a TLS version as ssl_protocols does.
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// ParseTLSVersions parses a comma-separated ssl_protocols list.
func ParseTLSVersions(s string) ([]uint16, error) {
	seen := map[uint16]bool{}
	var out []uint16
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		v, ok := tlsVersions[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("unknown TLS version %q; use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3", name)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no TLS version given; use for example \"TLSv1.2,TLSv1.3\"")
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}
