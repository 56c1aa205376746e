package admin

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestNotRunning: a connection refused on the admin address, in this
// system's own error, is "no relay runs" (Running false, ErrNotRunning), on
// which relay queue and relay token fall back to the data directory; any
// other failure is not.
func TestNotRunning(t *testing.T) {
	addr := testpeer.FreeAddr(t) // nothing listens: the SYN is answered with a reset
	_, dialErr := net.Dial("tcp", addr)
	if dialErr == nil || !connRefused(dialErr) {
		t.Fatalf("dial %s: %v; connRefused says false, want true", addr, dialErr)
	}
	if connRefused(errors.New("connection refused")) || connRefused(context.DeadlineExceeded) {
		t.Error("connRefused matched an error that is not the system's connection refused")
	}

	c, err := NewClient(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if running, err := c.Running(t.Context()); running || err != nil {
		t.Errorf("Running = %v, %v; want false, nil", running, err)
	}
	if _, err := c.Queue(t.Context()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("a call with nothing listening: %v; want ErrNotRunning", err)
	}
}
