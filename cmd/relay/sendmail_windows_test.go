package main

import "testing"

// TestSendmailFindsServiceConfig: on Windows relay sendmail falls back to
// the relay.toml that relay service install writes and the service runs
// with.
func TestSendmailFindsServiceConfig(t *testing.T) {
	if want := programDataLayout().config; systemConfig != want {
		t.Errorf("systemConfig = %q; want the service's %q", systemConfig, want)
	}
}
