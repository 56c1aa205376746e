package main

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Set at build time, for example
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=$(git rev-parse HEAD)" ./cmd/relay
//
// Without them, `relay version` takes the module version that go install
// pkg@version records, and the commit from the VCS information go build
// stamps into a binary built inside a git checkout (vcs.revision; not in
// a linked git worktree, which Go does not recognise).
var (
	version = "dev"
	commit  = ""
)

// runHashPassword reads a password (the first line of stdin) and prints
// its bcrypt hash for password_hash in [[users]] or [admin].
func runHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("hash-password", stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "relay hash-password: %v\n", err)
		return exitFail
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		fmt.Fprintln(stderr, "relay hash-password: no password on stdin (try: relay hash-password < file, or type it and press Enter)")
		return exitFail
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), *cost)
	if err != nil {
		fmt.Fprintf(stderr, "relay hash-password: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(stdout, string(hash))
	return exitOK
}

// runVersion prints the version, the commit and the Go version.
func runVersion(_ []string, _ io.Reader, stdout, _ io.Writer) int {
	info, _ := debug.ReadBuildInfo()
	v, c := buildVersion(info)
	fmt.Fprintf(stdout, "relay %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// buildVersion is the version and commit of this binary: -ldflags -X
// first, then what the Go toolchain recorded in info (which may be nil).
// A commit from a tree with uncommitted changes is marked "+modified".
func buildVersion(info *debug.BuildInfo) (v, c string) {
	v, c = version, commit
	if info == nil {
		if c == "" {
			c = "unknown"
		}
		return v, c
	}
	if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	if c == "" {
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if c != "" && modified {
			c += "+modified"
		}
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

// versionLine is "VERSION (commit COMMIT)" for the startup log line.
func versionLine() string {
	info, _ := debug.ReadBuildInfo()
	v, c := buildVersion(info)
	return v + " (commit " + c + ")"
}
