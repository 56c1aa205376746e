package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/relaymail/relay/spool"
)

// runQueue inspects and steers the spool, like mailq and postqueue -f.
func runQueue(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: relay queue list [-json] | retry ID|all | delete ID  [-config FILE]")
		return exitFail
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("queue "+verb, stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "list: print JSON")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	cfg, err := loadConfig(*cfgFlag, stderr)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	var target string
	switch verb {
	case "list":
	case "retry", "delete":
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "relay queue %s: give one message ID%s\n", verb, map[bool]string{true: " or all", false: ""}[verb == "retry"])
			return exitFail
		}
		target = fs.Arg(0)
	default:
		fmt.Fprintf(stderr, "relay queue: unknown action %q; use list, retry or delete\n", verb)
		return exitFail
	}

	dir := filepath.Join(cfg.Server.DataDir, "spool")
	sp, err := spool.Open(dir, spool.Options{})
	if errors.Is(err, spool.ErrLocked) {
		fmt.Fprintf(stderr, "relay queue: relay is running and holds %s; stop it, or use the admin API (%s) to steer the queue of a running relay\n", dir, cfg.Admin.Listen)
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay queue: %v\n", err)
		return exitFail
	}
	defer sp.Close()

	switch verb {
	case "list":
		envs, _ := sp.List()
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if envs == nil {
				envs = []*spool.Envelope{}
			}
			enc.Encode(envs)
			return exitOK
		}
		printQueue(stdout, envs)
	case "retry":
		n, err := retryQueued(sp, target)
		if err != nil {
			fmt.Fprintf(stderr, "relay queue retry: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "%d message(s) due now; relay delivers them when it runs\n", n)
	case "delete":
		if err := sp.Remove(target); err != nil {
			fmt.Fprintf(stderr, "relay queue delete: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "deleted %s\n", target)
	}
	return exitOK
}

// retryQueued makes queued messages due now in a spool no server runs on.
func retryQueued(sp *spool.Spool, id string) (int, error) {
	envs, err := sp.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, env := range envs {
		if id != "all" && env.ID != id {
			continue
		}
		env.NextAttempt = time.Time{}
		if err := sp.Update(context.Background(), env); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 && id != "all" {
		return 0, fmt.Errorf("no queued message %s", id)
	}
	return n, nil
}

// printQueue lists messages as mailq does: one line per message, then its
// sender and recipients with their last replies.
func printQueue(w io.Writer, envs []*spool.Envelope) {
	if len(envs) == 0 {
		fmt.Fprintln(w, "the queue is empty")
		return
	}
	for _, e := range envs {
		next := "now"
		if !e.NextAttempt.IsZero() {
			next = e.NextAttempt.Local().Format("2006-01-02 15:04:05")
		}
		from := "<" + e.From + ">"
		if e.Bounce {
			from += " (bounce)"
		}
		fmt.Fprintf(w, "%s  %d bytes  arrived %s  profile %s  attempts %d  next %s\n", e.ID, e.Size, e.Arrived.Local().Format("2006-01-02 15:04:05"), e.Profile, e.Attempts, next)
		fmt.Fprintf(w, "  from %s\n", from)
		for _, r := range e.Recipients {
			line := fmt.Sprintf("  to <%s>: %s", r.Addr, r.State)
			if r.Reply != "" {
				line += ": " + r.Reply
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintf(w, "%d message(s) queued\n", len(envs))
}
