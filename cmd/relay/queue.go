package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/relaymail/relay/queue"
	"github.com/relaymail/relay/spool"
)

// runQueue inspects and steers the spool, like mailq and postqueue -f.
func runQueue(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: relay queue list [-json] | retry ID|all | delete ID  [-config FILE] [-password-file FILE]")
		return exitFail
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("queue "+verb, stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "list: print JSON")
	passwordFile := passwordFlag(fs)
	// The ID may come before the flags: relay queue retry all -config x.
	var target string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	if target == "" && fs.NArg() > 0 {
		target = fs.Arg(0)
	}
	cfg, err := loadConfig(*cfgFlag, stderr)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	switch verb {
	case "list":
	case "retry", "delete":
		if target == "" || fs.NArg() > 1 {
			fmt.Fprintf(stderr, "relay queue %s: give one message ID%s\n", verb, map[bool]string{true: " or all", false: ""}[verb == "retry"])
			return exitFail
		}
	default:
		fmt.Fprintf(stderr, "relay queue: unknown action %q; use list, retry or delete\n", verb)
		return exitFail
	}

	// A running relay owns the spool: steer it through its admin API.
	// Otherwise steer the queue over the data directory. Either way the
	// verb ends in queue.Queue's List, Retry or Delete.
	client, err := runningServer(cfg, *passwordFile)
	if err != nil {
		fmt.Fprintf(stderr, "relay queue: %v\n", err)
		return exitFail
	}
	if client != nil {
		return steerQueue(client, "the running relay delivers them", verb, target, *asJSON, stdout, stderr)
	}
	dir := filepath.Join(cfg.Server.DataDir, "spool")
	sp, err := spool.Open(dir, spool.Options{})
	if errors.Is(err, spool.ErrLocked) {
		fmt.Fprintf(stderr, "relay queue: a relay is running and holds %s, but no admin listener answers on admin.listen (%q) of %s; give the running relay's -config, or set admin.listen so that relay queue can reach it\n", dir, cfg.Admin.Listen, cfg.File)
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay queue: %v\n", err)
		return exitFail
	}
	defer sp.Close()
	local := localQueue{queue.New(queue.Options{Spool: sp})}
	return steerQueue(local, "relay delivers them when it runs", verb, target, *asJSON, stdout, stderr)
}

// queueSteer is what relay queue steers: a running relay's admin API
// (*admin.Client), or a queue that does not run over the local data
// directory (localQueue).
type queueSteer interface {
	Queue(ctx context.Context) ([]*spool.Envelope, error)
	Retry(ctx context.Context, id string) (int, error)
	Delete(ctx context.Context, id string) error
}

// localQueue steers a queue that does not run, as the admin API steers
// the running one.
type localQueue struct{ q *queue.Queue }

func (l localQueue) Queue(context.Context) ([]*spool.Envelope, error) { return l.q.List() }

func (l localQueue) Retry(ctx context.Context, id string) (int, error) { return l.q.Retry(ctx, id) }

func (l localQueue) Delete(_ context.Context, id string) error { return l.q.Delete(id) }

// steerQueue runs one verb of relay queue; delivers says who delivers the
// messages a retry makes due.
func steerQueue(q queueSteer, delivers, verb, target string, asJSON bool, stdout, stderr io.Writer) int {
	ctx := context.Background()
	switch verb {
	case "list":
		envs, err := q.Queue(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "relay queue list: %v%s\n", err, apiHint(err))
			return exitFail
		}
		printList(stdout, envs, asJSON)
	case "retry":
		n, err := q.Retry(ctx, target)
		if err != nil {
			fmt.Fprintf(stderr, "relay queue retry: %v%s\n", err, apiHint(err))
			return exitFail
		}
		fmt.Fprintf(stdout, "%d message(s) due now; %s\n", n, delivers)
	case "delete":
		if err := q.Delete(ctx, target); err != nil {
			fmt.Fprintf(stderr, "relay queue delete: %v%s\n", err, apiHint(err))
			return exitFail
		}
		fmt.Fprintf(stdout, "deleted %s\n", target)
	}
	return exitOK
}

// printList prints the queue as mailq does, or as JSON.
func printList(w io.Writer, envs []*spool.Envelope, asJSON bool) {
	if !asJSON {
		printQueue(w, envs)
		return
	}
	if envs == nil {
		envs = []*spool.Envelope{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(envs)
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
			if r.Reply.Text != "" {
				line += ": " + r.Reply.Text
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintf(w, "%d message(s) queued\n", len(envs))
}
