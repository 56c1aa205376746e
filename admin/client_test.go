package admin

import "testing"

// TestNewClientWildcard: a wildcard admin.listen is called on loopback, of
// the same family, on the same port (config.DialAddr).
func TestNewClientWildcard(t *testing.T) {
	for listen, want := range map[string]string{
		"0.0.0.0:8025":   "http://127.0.0.1:8025",
		":8025":          "http://127.0.0.1:8025",
		"[::]:8026":      "http://[::1]:8026",
		"127.0.0.1:8027": "http://127.0.0.1:8027",
	} {
		c, err := NewClient(listen, "")
		if err != nil || c.BaseURL != want {
			t.Errorf("NewClient(%q) = %+v, %v; want BaseURL %q", listen, c, err, want)
		}
	}
	if _, err := NewClient("8025", ""); err == nil {
		t.Error(`NewClient("8025") = nil error; want one: not host:port`)
	}
}
