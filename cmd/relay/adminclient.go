package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/relaymail/relay/admin"
	"github.com/relaymail/relay/config"
)

// passwordFlag adds -password-file, the admin password for a running
// server's admin API (else $RELAY_ADMIN_PASSWORD).
func passwordFlag(fs *flag.FlagSet) *string {
	return fs.String("password-file", "", "file holding the admin password, when admin.password_hash is set (default $RELAY_ADMIN_PASSWORD)")
}

// runningServer returns a client for the admin API of the relay that runs
// with cfg, or nil when none answers on admin.listen.
func runningServer(cfg *config.Config, passwordFile string) (*admin.Client, error) {
	if cfg.Admin.Listen == "" {
		return nil, nil
	}
	password := os.Getenv("RELAY_ADMIN_PASSWORD")
	if passwordFile != "" {
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("read the admin password: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	c, err := admin.NewClient(cfg.Admin.Listen, password)
	if err != nil {
		return nil, err
	}
	running, err := c.Running(context.Background())
	if err != nil || !running {
		return nil, err
	}
	return c, nil
}

// apiHint explains an API error that needs the user's help.
func apiHint(err error) string {
	if err == admin.ErrUnauthorized {
		return "; give it with -password-file FILE or $RELAY_ADMIN_PASSWORD"
	}
	return ""
}
