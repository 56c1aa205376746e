package testpeer

import (
	"fmt"
	"net"
	"syscall"
)

// reservePort binds a TCP socket to a port of 127.0.0.1 without listening
// on it, until release. Connections to the port are refused, as to a
// down server. Linux picks no bound port for a bind to port 0, yet lets a
// listener that sets SO_REUSEADDR (every Go listener does) bind and
// listen on it, while this socket sets SO_REUSEADDR and never listens.
func reservePort() (addr string, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("reserve a port: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("reserve a port: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("reserve a port: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("reserve a port: %w", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), func() { syscall.Close(fd) }, nil
}
