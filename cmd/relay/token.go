package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/relaymail/relay/admin"
	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
)

// runToken shows and renews the OAuth2 tokens of the profiles: through the
// running relay's admin API, or on the data directory when none runs.
func runToken(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	usage := "usage: relay token status [NAME] [-json] | refresh NAME | grant [-device] NAME  [-config FILE] [-password-file FILE]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitFail
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("token "+verb, stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "status: print JSON")
	device := fs.Bool("device", false, "grant: sign in with a device code (RFC 8628) instead of a browser redirect")
	passwordFile := passwordFlag(fs)
	// Flags may follow the profile name: relay token refresh o365 -config x.
	var name string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	switch verb {
	case "status":
	case "refresh", "grant":
		if name == "" {
			fmt.Fprintf(stderr, "relay token %s: give the profile's name\n", verb)
			return exitFail
		}
	default:
		fmt.Fprintf(stderr, "relay token: unknown action %q\n%s\n", verb, usage)
		return exitFail
	}
	cfg, err := loadConfig(*cfgFlag, stderr)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	if name != "" {
		p := cfg.Profile(name)
		if p == nil || !p.IsOAuth2() {
			fmt.Fprintf(stderr, "relay token %s: %s has no OAuth2 profile named %q\n", verb, cfg.File, name)
			return exitFail
		}
	}
	// A running relay owns the tokens: work through its admin API.
	// Otherwise through a token manager of its own over the data
	// directory. Either way each verb is one function over tokenSteer.
	client, err := runningServer(cfg, *passwordFile)
	if err != nil {
		fmt.Fprintf(stderr, "relay token %s: %v\n", verb, err)
		return exitFail
	}
	t := tokenCmd{cfg: cfg, name: name, stdout: stdout, stderr: stderr, verb: verb}
	if client != nil {
		t.steer, t.base = client, client.BaseURL
	} else {
		m, err := t.manager(verb != "status")
		if err != nil {
			return t.fail(err)
		}
		defer m.Close()
		t.steer = localTokens{m}
	}
	switch verb {
	case "status":
		return t.status(*asJSON)
	case "refresh":
		return t.refresh()
	}
	if *device {
		return t.grantDevice()
	}
	return t.grant(stdin)
}

// tokenSteer is what relay token works through: a running relay's admin
// API (*admin.Client), or a token manager that runs in the command over
// the local data directory (localTokens).
type tokenSteer interface {
	Tokens(ctx context.Context) ([]oauth.Status, error)
	Token(ctx context.Context, profile string) (oauth.Status, error)
	Refresh(ctx context.Context, profile string) (admin.TokenRefreshResult, error)
	StartGrant(ctx context.Context, profile string) (authURL string, err error)
	CompleteGrant(ctx context.Context, profile, redirectURL string) (admin.GrantComplete, error)
	StartDevice(ctx context.Context, profile string) (oauth.DeviceGrant, error)
}

// localTokens works on a token manager of the command's own, with the
// answers the admin API gives for the running relay's.
type localTokens struct{ m *oauth.Manager }

func (l localTokens) Tokens(context.Context) ([]oauth.Status, error) { return l.m.Statuses(), nil }

func (l localTokens) Token(_ context.Context, profile string) (oauth.Status, error) {
	if s := l.m.Source(profile); s != nil {
		return s.Status(), nil
	}
	return oauth.Status{}, fmt.Errorf("no OAuth2 profile %q", profile)
}

func (l localTokens) Refresh(ctx context.Context, profile string) (admin.TokenRefreshResult, error) {
	err := l.m.Refresh(ctx, profile)
	st, _ := l.Token(ctx, profile)
	if err != nil {
		return admin.TokenRefreshResult{Error: err.Error(), Token: st}, err
	}
	return admin.TokenRefreshResult{Refreshed: true, Token: st}, nil
}

func (l localTokens) StartGrant(_ context.Context, profile string) (string, error) {
	return l.m.StartGrant(profile)
}

func (l localTokens) CompleteGrant(ctx context.Context, profile, redirectURL string) (admin.GrantComplete, error) {
	if err := l.m.CompleteRedirect(ctx, profile, redirectURL); err != nil {
		return admin.GrantComplete{Error: err.Error()}, err
	}
	return admin.GrantComplete{Granted: true}, nil
}

func (l localTokens) StartDevice(ctx context.Context, profile string) (oauth.DeviceGrant, error) {
	return l.m.StartDevice(ctx, profile)
}

type tokenCmd struct {
	cfg            *config.Config
	steer          tokenSteer
	base           string // the running relay's admin listener; "" when none runs
	name, verb     string
	stdout, stderr io.Writer
}

func (t *tokenCmd) fail(err error) int {
	hint := apiHint(err)
	fmt.Fprintf(t.stderr, "relay token %s: %v%s\n", t.verb, err, hint)
	return exitFail
}

// logger is the command's own token manager's: warnings on stderr.
func (t *tokenCmd) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(t.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// manager makes a token manager on the data directory for a relay that
// does not run. Writes (refresh, grant) refuse when one runs without an
// admin listener: both would use and rotate the same refresh token.
func (t *tokenCmd) manager(write bool) (*oauth.Manager, error) {
	if write {
		dir := filepath.Join(t.cfg.Server.DataDir, "spool")
		sp, err := spool.Open(dir, spool.Options{})
		if errors.Is(err, spool.ErrLocked) {
			return nil, fmt.Errorf("a relay is running on %s but no admin listener answers on admin.listen (%q) of %s; give the running relay's -config, or stop it", t.cfg.Server.DataDir, t.cfg.Admin.Listen, t.cfg.File)
		}
		if err == nil {
			sp.Close()
		}
	}
	return oauth.NewManager(t.cfg, oauth.Options{Logger: t.logger()})
}

func (t *tokenCmd) status(asJSON bool) int {
	sts, err := t.steer.Tokens(context.Background())
	if err != nil {
		return t.fail(err)
	}
	if t.name != "" {
		var one []oauth.Status
		for _, st := range sts {
			if st.Profile == t.name {
				one = append(one, st)
			}
		}
		sts = one
	}
	if asJSON {
		enc := json.NewEncoder(t.stdout)
		enc.SetIndent("", "  ")
		if sts == nil {
			sts = []oauth.Status{}
		}
		enc.Encode(sts)
		return exitOK
	}
	if len(sts) == 0 {
		fmt.Fprintf(t.stdout, "%s has no OAuth2 profiles\n", t.cfg.File)
		return exitOK
	}
	for _, st := range sts {
		printStatus(t.stdout, st)
	}
	return exitOK
}

// printStatus prints one profile's token state in a few lines.
func printStatus(w io.Writer, st oauth.Status) {
	flow := "client credentials"
	if st.Interactive {
		flow = "interactive"
	}
	expiry := "no expiry"
	switch {
	case !st.Expiry.IsZero():
		expiry = "expires " + st.Expiry.Local().Format("2006-01-02 15:04:05") + " (" + relative(st.Expiry) + ")"
	case st.State != oauth.StateValid:
		expiry = "no access token"
	}
	refresh := "none"
	if st.HasRefreshToken {
		refresh = "held"
	}
	fmt.Fprintf(w, "%s: %s, %s, refresh token %s (%s; %d token requests, %d failed)\n", st.Profile, st.State, expiry, refresh, flow, st.Requests, st.Failures)
	if st.LastError != "" {
		fmt.Fprintf(w, "  last error %s: %s\n", st.LastErrorAt.Local().Format("2006-01-02 15:04:05"), st.LastError)
		if st.Hint != "" {
			fmt.Fprintf(w, "  hint: %s\n", st.Hint)
		}
	}
	if g := st.Device; g != nil && g.State == oauth.DevicePending {
		fmt.Fprintf(w, "  device sign-in pending: open %s and enter %s\n", g.VerificationURI, g.UserCode)
	}
	if st.State == oauth.StateInvalid && st.Interactive {
		device := ""
		if st.DeviceSignIn {
			device = " (or relay token grant -device " + st.Profile + " to sign in with a code)"
		}
		fmt.Fprintf(w, "  needs a new grant: relay token grant %s%s\n", st.Profile, device)
	}
}

func relative(t time.Time) string {
	d := time.Until(t).Round(time.Second)
	if d < 0 {
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}

func (t *tokenCmd) refresh() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := t.steer.Refresh(ctx, t.name)
	if err != nil {
		if r.Token.Profile != "" {
			printStatus(t.stderr, r.Token)
		}
		return t.fail(err)
	}
	printStatus(t.stdout, r.Token)
	return exitOK
}
