package testpeer

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// TestFreeAddrIsReserved: the address of FreeAddr refuses connections, is
// never handed to a listener on 127.0.0.1:0 while the test runs, and an
// upstream can still come up on it.
func TestFreeAddrIsReserved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the port is held only on Linux")
	}
	addr := FreeAddr(t)
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded; want connection refused", addr)
	}
	// Go through the whole ephemeral range once, a few hundred listeners
	// open at a time.
	var open []net.Listener
	defer func() {
		for _, ln := range open {
			ln.Close()
		}
	}()
	for range 30000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if ln.Addr().String() == addr {
			t.Fatalf("a listener on 127.0.0.1:0 was given the reserved %s", addr)
		}
		open = append(open, ln)
		if len(open) > 200 {
			open[0].Close()
			open = open[1:]
		}
	}
	u := StartUpstream(t, UpstreamOptions{Addr: addr})
	if u.Addr != addr {
		t.Fatalf("upstream on %s; want %s", u.Addr, addr)
	}
}
