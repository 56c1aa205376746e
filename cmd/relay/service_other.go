//go:build !windows

package main

import (
	"fmt"
	"io"
)

// serviceCommand: relay service manages the Windows service only.
func serviceCommand(_ string, _ []string, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "relay service is for Windows (the Service Control Manager); on Linux install the Debian package or dist/relay.service for systemd (README, \"Install\")")
	return exitFail
}

// programData is %ProgramData% on Windows; elsewhere there is none.
func programData() string { return "" }
