package config

import (
	"fmt"
	"net"
	"net/netip"
)

// Listen addresses (server.listen, server.smtps_listen, admin.listen) are
// "host:port" as net.Listen takes them; an empty host or an unspecified
// address (0.0.0.0, ::) listens on every interface.

// DialAddr returns the address a program on this machine connects to in
// order to reach a listener on listen: a wildcard host (empty, 0.0.0.0, ::
// or an IPv4-mapped 0.0.0.0) becomes the loopback address of its family,
// 127.0.0.1 or ::1; any other host, and the port, are kept as they are.
// `relay sendmail` (server.listen) and the admin API's client
// (admin.listen) both use it. A listen that is not host:port is an error.
func DialAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %w", listen, err)
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsUnspecified() {
		if a.Unmap().Is4() {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}

// IsLoopbackHost reports whether host (from host:port) can only be reached
// from this machine.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
