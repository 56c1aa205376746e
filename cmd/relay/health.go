package main

import (
	"context"
	"fmt"
	"io"

	"github.com/relaymail/relay/admin"
)

// runHealth asks the running relay's admin listener for /healthz and exits
// 0 when it answers ok, 1 otherwise. A container's HEALTHCHECK runs it:
// distroless images have no curl. The address is -admin, else admin.listen
// of the configuration relay serve would read (an unspecified host such as
// 0.0.0.0 is asked on loopback).
func runHealth(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", stderr)
	cfgFlag := fs.String("config", "", "configuration file whose admin.listen to ask (default $RELAY_CONFIG, else ./relay.toml, else the embedded default)")
	addr := fs.String("admin", "", "admin listener HOST:PORT to ask, overriding admin.listen")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	listen := *addr
	if listen == "" {
		cfg, err := loadConfig(*cfgFlag, io.Discard)
		if err != nil {
			printConfigError(stderr, err)
			return exitConfig
		}
		listen = cfg.Admin.Listen
		if listen == "" {
			fmt.Fprintf(stderr, "relay health: admin.listen is off in %s: /healthz needs the admin listener\n", cfg.File)
			return exitFail
		}
	}
	c, err := admin.NewClient(listen, "")
	if err != nil {
		fmt.Fprintf(stderr, "relay health: %v\n", err)
		return exitFail
	}
	running, err := c.Running(context.Background())
	if err != nil {
		fmt.Fprintf(stderr, "relay health: %v\n", err)
		return exitFail
	}
	if !running {
		fmt.Fprintf(stderr, "relay health: no relay answers on %s\n", c.BaseURL)
		return exitFail
	}
	fmt.Fprintln(stdout, "ok")
	return exitOK
}
