// Command relay is a local SMTP relay that lets legacy applications send
// mail through modern providers with classic AUTH or OAuth 2.0 (XOAUTH2).
//
// Usage:
//
//	relay [serve] [-config FILE]     run the server
//	relay check [-config FILE]       validate the configuration
//	relay test -profile NAME -to ADDR [-from ADDR] [-subject S] [-v]
//	relay queue list|retry ID|all|delete ID
//	relay token status [NAME] | refresh NAME | grant [-device] NAME
//	relay sendmail [-t] [-f ADDR] [-i] [rcpt ...] < message
//	relay service install [-config FILE] | uninstall | start | stop | status   (Windows)
//	relay health [-config FILE]      exit 0 when the running relay is healthy
//	relay hash-password              bcrypt a password read on stdin
//	relay version
//
// See README.md and SPEC.md for the configuration file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/relaymail/relay/config"
)

// Exit statuses. A configuration error exits 2, so that systemd's
// RestartPreventExitStatus=2 stops a restart loop.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func main() {
	args := os.Args[1:]
	if isSendmailName(os.Args[0]) {
		// A symlink /usr/sbin/sendmail → relay: behave as relay sendmail.
		args = append([]string{"sendmail"}, args...)
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr))
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the server (the default)", runServe},
		{"check", "validate the configuration and list the profiles", runCheck},
		{"test", "send a test email through a profile now", runTest},
		{"queue", "list, retry or delete queued messages (list [-json] | retry ID|all | delete ID)", runQueue},
		{"token", "OAuth2 tokens of the profiles (status [NAME] | refresh NAME | grant [-device] NAME)", runToken},
		{"sendmail", "submit the message on stdin to the running relay, as sendmail(8) does", runSendmail},
		{"service", "install, uninstall, start or stop the Windows service (install [-config FILE] | uninstall | start | stop | status)", runService},
		{"health", "exit 0 when the running relay answers /healthz on its admin listener", runHealth},
		{"hash-password", "read a password on stdin and print its bcrypt hash for [[users]]", runHashPassword},
		{"version", "print the version", runVersion},
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args, stdin, stdout, stderr)
		}
	}
	if name == "help" {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "relay: unknown command %q\n", name)
	usage(stderr)
	return exitFail
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: relay [command] [flags]")
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "Run relay COMMAND -h for the flags of a command.")
}

// newFlagSet makes a flag set that reports to stderr and does not exit.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relay "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configPath picks the configuration file: -config, else $RELAY_CONFIG,
// else ./relay.toml if present; "" means the embedded default.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("RELAY_CONFIG"); env != "" {
		return env
	}
	if _, err := os.Stat("relay.toml"); err == nil {
		return "relay.toml"
	}
	return ""
}

// systemConfig is where the service reads its configuration: the systemd
// unit's /etc/relay/relay.toml, or on Windows %ProgramData%\relay\relay.toml
// (systemConfigPath). relay sendmail looks there after ./relay.toml, so
// that /usr/sbin/sendmail → relay finds the service from any directory;
// the other commands do not (configPath) but name it (noteSystemConfig).
// A variable for tests.
var systemConfig = systemConfigPath(runtime.GOOS, programData())

// noteSystemConfig writes one line to w when the service's configuration
// file exists while a command runs on the embedded default: on a packaged
// install "relay check" alone checks the embedded default, not the
// service's file, and the lookup order (configPath) stays as it is.
func noteSystemConfig(w io.Writer) {
	if _, err := os.Stat(systemConfig); err != nil {
		return
	}
	arg := systemConfig
	if strings.ContainsAny(arg, " \t") {
		arg = `"` + arg + `"`
	}
	fmt.Fprintf(w, "relay: note: no -config, $RELAY_CONFIG or ./relay.toml, so this is the embedded default, not the service's %s; to check that one: relay check -config %s\n", systemConfig, arg)
}

// loadConfig loads the chosen configuration and prints its warnings, or
// the note of noteSystemConfig for the embedded default.
func loadConfig(flagValue string, stderr io.Writer) (*config.Config, error) {
	path := configPath(flagValue)
	if path == "" {
		noteSystemConfig(stderr)
		return config.Embedded(), nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "relay: warning: %s\n", w)
	}
	return cfg, nil
}

// printConfigError prints a configuration error, one problem a line; in
// the journal, as errors.
func printConfigError(stderr io.Writer, err error) {
	prefix := ""
	if writesToJournal(stderr) {
		prefix = journalPriority(slog.LevelError)
	}
	var ce *config.Error
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintln(stderr, prefix+p.String())
		}
		return
	}
	fmt.Fprintf(stderr, "%srelay: %v\n", prefix, err)
}

// newLogger makes the process logger: text (default) or JSON on stderr.
// When w is the journal, each line starts with its syslog priority.
func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	journal := writesToJournal(w)
	opts := &slog.HandlerOptions{Level: level}
	var newHandler func(io.Writer) slog.Handler
	switch format {
	case "", "text":
		if journal {
			opts.ReplaceAttr = dropTime // journald stamps each line itself
		}
		newHandler = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	case "json":
		// Durations as "1.5s" rather than nanoseconds, as in the text format.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		newHandler = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
	default:
		return nil, fmt.Errorf("unknown log format %q; use text or json", format)
	}
	if journal {
		return slog.New(newPriorityHandler(w, newHandler)), nil
	}
	return slog.New(newHandler(w)), nil
}
