package upstream

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

var fqdn = sync.OnceValue(func() string {
	name, err := os.Hostname()
	if err != nil {
		return ""
	}
	if isFQDN(name) {
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if cname, err := net.DefaultResolver.LookupCNAME(ctx, name); err == nil {
		if cname = strings.TrimSuffix(cname, "."); isFQDN(cname) {
			return cname
		}
	}
	return ""
})

// hostFQDN is this machine's fully qualified name, or "" when it has none.
func hostFQDN() string { return fqdn() }

func isFQDN(name string) bool {
	lower := strings.ToLower(name)
	return strings.Contains(name, ".") && lower != "localhost" && !strings.HasPrefix(lower, "localhost.")
}

// addressLiteral formats the local address for EHLO (RFC 5321 §4.1.3).
func addressLiteral(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "[127.0.0.1]"
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.String() + "]"
}
