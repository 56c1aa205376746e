package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// TestTestCommandRecipientRefused: relay test says the upstream refused
// the recipient, with its reply, and exits 1.
func TestTestCommandRecipientRefused(t *testing.T) {
	u := testpeer.StartUpstream(t, testpeer.UpstreamOptions{OnRcpt: func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}})
	cfg := filepath.Join(t.TempDir(), "relay.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[[profiles]]\nname = \"plain\"\nhostname = %q\nport = %d\n", u.Host, u.Port)), 0o600)
	var stdout, stderr strings.Builder
	code := runTest([]string{"-config", cfg, "-profile", "plain", "-to", "nobody@example.com"}, nil, &stdout, &stderr)
	if code != exitFail || stdout.String() != "" || !strings.HasPrefix(stderr.String(), "relay test: recipient refused: ") || !strings.Contains(stderr.String(), "550 5.1.1") {
		t.Errorf("relay test to a refused recipient: exit %d, %q, %q; want 1 and the 550", code, stdout.String(), stderr.String())
	}
}
