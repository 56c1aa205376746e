package main

import (
	"fmt"
	"io"
)

// runCheck validates the configuration and prints one line per profile:
// name, kind, upstream and authentication.
func runCheck(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", stderr)
	cfgFlag := fs.String("config", "", "configuration file (default $RELAY_CONFIG, else ./relay.toml, else the embedded default)")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	cfg, err := loadConfig(*cfgFlag, stderr)
	if err != nil {
		printConfigError(stderr, err)
		return exitFail
	}
	for _, p := range cfg.Profiles {
		kind := p.Kind
		if p.IsOAuth2() {
			kind = "oauth2"
		} else if kind == "smtp" {
			kind = "classic"
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\tdelivery=%s\n", p.Name, kind, p.Upstream(), p.AuthMethod(), p.Delivery)
	}
	fmt.Fprintf(stderr, "%s: OK (%d profiles, %d users, %d routes)\n", cfg.File, len(cfg.Profiles), len(cfg.Users), len(cfg.Routes))
	return exitOK
}
