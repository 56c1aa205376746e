//go:build !linux

package testpeer

import "net"

// reservePort returns a port of 127.0.0.1 that was free a moment ago;
// outside Linux it is not held (see freeaddr_linux.go).
func reservePort() (addr string, release func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	defer ln.Close()
	return ln.Addr().String(), func() {}, nil
}
