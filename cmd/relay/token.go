package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/relaymail/relay/admin"
	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
)

// grantWait bounds how long `relay token grant` waits for the browser: the
// token manager forgets a grant after ten minutes.
const grantWait = 10 * time.Minute

// runToken shows and renews the OAuth2 tokens of the profiles: through the
// running relay's admin API, or on the data directory when none runs.
func runToken(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	usage := "usage: relay token status [NAME] [-json] | refresh NAME | grant NAME  [-config FILE] [-password-file FILE]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return exitFail
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("token "+verb, stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "status: print JSON")
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
	client, err := runningServer(cfg, *passwordFile)
	if err != nil {
		fmt.Fprintf(stderr, "relay token %s: %v\n", verb, err)
		return exitFail
	}
	t := tokenCmd{cfg: cfg, client: client, name: name, stdout: stdout, stderr: stderr, verb: verb}
	switch verb {
	case "status":
		return t.status(*asJSON)
	case "refresh":
		return t.refresh()
	}
	return t.grant()
}

type tokenCmd struct {
	cfg            *config.Config
	client         *admin.Client // nil: no relay runs
	name, verb     string
	stdout, stderr io.Writer
}

func (t *tokenCmd) fail(err error) int {
	hint := apiHint(err)
	fmt.Fprintf(t.stderr, "relay token %s: %v%s\n", t.verb, err, hint)
	return exitFail
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
	logger := slog.New(slog.NewTextHandler(t.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return oauth.NewManager(t.cfg, oauth.Options{Logger: logger})
}

func (t *tokenCmd) status(asJSON bool) int {
	var sts []admin.TokenStatus
	if t.client != nil {
		var err error
		if sts, err = t.client.Tokens(context.Background()); err != nil {
			return t.fail(err)
		}
	} else {
		m, err := t.manager(false)
		if err != nil {
			return t.fail(err)
		}
		sts = admin.OAuthTokens(m).Statuses()
		m.Close()
	}
	if t.name != "" {
		var one []admin.TokenStatus
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
			sts = []admin.TokenStatus{}
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
func printStatus(w io.Writer, st admin.TokenStatus) {
	flow := "client credentials"
	if st.Interactive {
		flow = "interactive"
	}
	expiry := "no expiry"
	switch {
	case !st.Expiry.IsZero():
		expiry = "expires " + st.Expiry.Local().Format("2006-01-02 15:04:05") + " (" + relative(st.Expiry) + ")"
	case st.State != admin.StateValid:
		expiry = "no access token"
	}
	refresh := "none"
	if st.HasRefreshToken {
		refresh = "held"
	}
	fmt.Fprintf(w, "%s: %s, %s, refresh token %s (%s; %d token requests, %d failed)\n", st.Profile, st.State, expiry, refresh, flow, st.Requests, st.Failures)
	if st.LastError != "" {
		fmt.Fprintf(w, "  last error %s: %s\n", st.LastErrorAt.Local().Format("2006-01-02 15:04:05"), st.LastError)
	}
	if st.State == admin.StateInvalid && st.Interactive {
		fmt.Fprintf(w, "  needs a new grant: relay token grant %s\n", st.Profile)
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
	if t.client != nil {
		r, err := t.client.Refresh(ctx, t.name)
		if err != nil {
			if r.Token.Profile != "" {
				printStatus(t.stderr, r.Token)
			}
			return t.fail(err)
		}
		printStatus(t.stdout, r.Token)
		return exitOK
	}
	m, err := t.manager(true)
	if err != nil {
		return t.fail(err)
	}
	defer m.Close()
	tk := admin.OAuthTokens(m)
	if err := tk.Refresh(ctx, t.name); err != nil {
		return t.fail(err)
	}
	for _, st := range tk.Statuses() {
		if st.Profile == t.name {
			printStatus(t.stdout, st)
		}
	}
	return exitOK
}

// grant runs the authorization code grant of an interactive profile: it
// prints the URL to open in a browser and waits until the token arrives,
// on the running relay or on its own callback listener.
func (t *tokenCmd) grant() int {
	start := time.Now().Add(-time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), grantWait)
	defer cancel()
	done := func(st admin.TokenStatus) (bool, error) {
		switch {
		case st.State == admin.StateValid && st.LastRefresh.After(start):
			return true, nil
		case st.LastError != "" && st.LastErrorAt.After(start):
			return true, fmt.Errorf("the grant failed: %s", st.LastError)
		}
		return false, nil
	}
	if t.client != nil {
		u, err := t.client.StartGrant(ctx, t.name)
		if err != nil {
			return t.fail(err)
		}
		t.printURL(u, t.client.BaseURL)
		for {
			st, err := t.client.Token(ctx, t.name)
			if err != nil {
				return t.fail(err)
			}
			if ok, err := done(st); ok {
				if err != nil {
					return t.fail(err)
				}
				printStatus(t.stdout, st)
				return exitOK
			}
			select {
			case <-ctx.Done():
				return t.fail(fmt.Errorf("no token after %v; run relay token grant %s again", grantWait, t.name))
			case <-time.After(time.Second):
			}
		}
	}

	// No relay runs: receive the redirect here, on admin.listen.
	if t.cfg.Admin.Listen == "" {
		return t.fail(errors.New("admin.listen is off, so nothing can receive the authorization server's redirect; set it (default 127.0.0.1:8025)"))
	}
	m, err := t.manager(true)
	if err != nil {
		return t.fail(err)
	}
	defer m.Close()
	ln, err := net.Listen("tcp", t.cfg.Admin.Listen)
	if err != nil {
		return t.fail(fmt.Errorf("listen on admin.listen for the redirect: %w", err))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /oauth2/callback", m.CallbackHandler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		hs.Shutdown(sctx)
	}()
	u, err := m.StartGrant(t.name)
	if err != nil {
		return t.fail(err)
	}
	t.printURL(u, "http://"+ln.Addr().String())
	src := m.Source(t.name)
	tk := admin.OAuthTokens(m)
	for {
		changed := src.Changed()
		for _, st := range tk.Statuses() {
			if st.Profile != t.name {
				continue
			}
			if ok, err := done(st); ok {
				if err != nil {
					return t.fail(err)
				}
				printStatus(t.stdout, st)
				return exitOK
			}
		}
		select {
		case <-ctx.Done():
			return t.fail(fmt.Errorf("no token after %v; run relay token grant %s again", grantWait, t.name))
		case <-changed:
		}
	}
}

func (t *tokenCmd) printURL(u, base string) {
	fmt.Fprintf(t.stdout, "Open this URL in a browser and allow access for profile %s:\n\n  %s\n\nWaiting (at most %v) for the authorization server to send the browser back to %s/oauth2/callback ...\n", t.name, u, grantWait, base)
}
