package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/relaymail/relay/admin"
	"github.com/relaymail/relay/oauth"
)

// grantWait bounds how long `relay token grant` waits for the browser: the
// token manager forgets a grant after ten minutes.
const grantWait = 10 * time.Minute

// grantSteps is what `relay token grant` needs of a token manager: the
// running relay's admin API, or a Manager of its own on the data directory.
type grantSteps struct {
	start    func(ctx context.Context) (authURL string, err error)
	complete func(ctx context.Context, pasted string) error
	status   func(ctx context.Context) (admin.TokenStatus, error)
	// changed is closed at the next change of state; nil: look again
	// every second.
	changed func() <-chan struct{}
	device  func(ctx context.Context) (admin.DeviceStart, error)
}

// steps returns the grant steps through the running relay, or on a Manager
// of its own that receives the redirect on admin.listen (stop ends it).
func (t *tokenCmd) steps(callback bool) (s grantSteps, base string, stop func(), err error) {
	if t.client != nil {
		c := t.client
		return grantSteps{
			start: func(ctx context.Context) (string, error) { return c.StartGrant(ctx, t.name) },
			complete: func(ctx context.Context, pasted string) error {
				r, err := c.CompleteGrant(ctx, t.name, pasted)
				if err != nil && r.Hint != "" {
					return fmt.Errorf("%w (%s)", err, r.Hint)
				}
				return err
			},
			status: func(ctx context.Context) (admin.TokenStatus, error) { return c.Token(ctx, t.name) },
			device: func(ctx context.Context) (admin.DeviceStart, error) { return c.StartDevice(ctx, t.name) },
		}, c.BaseURL, func() {}, nil
	}
	m, err := t.manager(true)
	if err != nil {
		return grantSteps{}, "", nil, err
	}
	stop = func() { m.Close() }
	if callback {
		// No relay runs: receive the redirect here, on admin.listen.
		if t.cfg.Admin.Listen == "" {
			m.Close()
			return grantSteps{}, "", nil, errors.New("admin.listen is off, so nothing can receive the authorization server's redirect; set it (default 127.0.0.1:8025), or paste the address the browser ends on")
		}
		ln, err := net.Listen("tcp", t.cfg.Admin.Listen)
		if err != nil {
			m.Close()
			return grantSteps{}, "", nil, fmt.Errorf("listen on admin.listen for the redirect: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /oauth2/callback", m.CallbackHandler())
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		base = "http://" + ln.Addr().String()
		stop = func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			hs.Shutdown(sctx)
			m.Close()
		}
	}
	tk := admin.OAuthTokens(m)
	return grantSteps{
		start:    func(context.Context) (string, error) { return m.StartGrant(t.name) },
		complete: func(ctx context.Context, pasted string) error { return tk.CompleteRedirect(ctx, t.name, pasted) },
		status: func(context.Context) (admin.TokenStatus, error) {
			for _, st := range tk.Statuses() {
				if st.Profile == t.name {
					return st, nil
				}
			}
			return admin.TokenStatus{}, fmt.Errorf("no OAuth2 profile %q", t.name)
		},
		changed: func() <-chan struct{} { return m.Source(t.name).Changed() },
		device:  func(ctx context.Context) (admin.DeviceStart, error) { return tk.StartDevice(ctx, t.name) },
	}, base, stop, nil
}

// wait polls status until done says the grant ended, the pasted lines
// complete it, or grantWait passes.
func (t *tokenCmd) wait(ctx context.Context, s grantSteps, pasted <-chan string, done func(admin.TokenStatus) (bool, error)) int {
	for {
		var changed <-chan struct{}
		if s.changed != nil {
			changed = s.changed()
		}
		st, err := s.status(ctx)
		if err != nil {
			return t.fail(err)
		}
		if ok, err := done(st); ok {
			if err != nil {
				printStatus(t.stderr, st)
				return t.fail(err)
			}
			printStatus(t.stdout, st)
			return exitOK
		}
		tm := time.NewTimer(time.Second)
		tick := tm.C
		if changed != nil {
			tick = nil
		}
		select {
		case <-ctx.Done():
			return t.fail(fmt.Errorf("no token after %v; run relay token %s %s again", grantWait, t.verb, t.name))
		case <-changed:
		case <-tick:
		case line := <-pasted:
			if err := s.complete(ctx, line); err != nil {
				fmt.Fprintf(t.stderr, "relay token grant: the pasted address did not complete the grant: %v\nPaste the whole address again, or wait for the redirect.\n", err)
			}
		}
		tm.Stop()
	}
}

// grant runs the authorization code grant of an interactive profile: it
// prints the URL to open in a browser and waits until the token arrives,
// by the redirect on the running relay or on its own callback listener, or
// by the address the browser ended on, pasted on standard input.
func (t *tokenCmd) grant(stdin io.Reader) int {
	start := time.Now().Add(-time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), grantWait)
	defer cancel()
	s, base, stop, err := t.steps(true)
	if err != nil {
		return t.fail(err)
	}
	defer stop()
	u, err := s.start(ctx)
	if err != nil {
		return t.fail(err)
	}
	fmt.Fprintf(t.stdout, "Open this URL in a browser and allow access for profile %s:\n\n  %s\n\n"+
		"Waiting (at most %v) for the authorization server to send the browser back to %s/oauth2/callback ...\n"+
		"If that browser cannot reach this machine, paste here the address it ended on and press Enter.\n", t.name, u, grantWait, base)
	return t.wait(ctx, s, pastedLines(stdin), func(st admin.TokenStatus) (bool, error) {
		switch {
		case st.State == admin.StateValid && st.LastRefresh.After(start):
			return true, nil
		case st.LastError != "" && st.LastErrorAt.After(start):
			return true, fmt.Errorf("the grant failed: %s", st.LastError)
		}
		return false, nil
	})
}

// grantDevice signs an interactive profile in with a device code
// (RFC 8628): it prints the verification URI and the user code and waits
// until the sign-in ends.
func (t *tokenCmd) grantDevice() int {
	ctx, cancel := context.WithTimeout(context.Background(), grantWait)
	defer cancel()
	s, _, stop, err := t.steps(false)
	if err != nil {
		return t.fail(err)
	}
	defer stop()
	d, err := s.device(ctx)
	if err != nil {
		var te *oauth.TokenError
		if errors.As(err, &te) && te.Hint() != "" {
			err = fmt.Errorf("%w (%s)", err, te.Hint())
		}
		return t.fail(err)
	}
	fmt.Fprintf(t.stdout, "%s\n\n  %s\n  code: %s\n\nWaiting (at most %s) for the sign-in ...\n", d.Message, d.VerificationURI, d.UserCode, time.Duration(d.ExpiresIn)*time.Second)
	return t.wait(ctx, s, nil, func(st admin.TokenStatus) (bool, error) {
		g := st.Grant
		switch {
		case g == nil || g.UserCode != d.UserCode || g.State == admin.GrantPending:
			return false, nil
		case g.State == admin.GrantGranted:
			return true, nil
		case g.Hint != "":
			return true, fmt.Errorf("the device sign-in %s: %s (%s)", g.State, g.Error, g.Hint)
		}
		return true, fmt.Errorf("the device sign-in %s: %s", g.State, g.Error)
	})
}

// pastedLines delivers the non-empty lines of r. The reader goroutine
// ends at EOF; at the end of the command a blocked terminal read is
// abandoned with the process.
func pastedLines(r io.Reader) <-chan string {
	ch := make(chan string)
	if r == nil {
		return ch
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				ch <- line
			}
		}
	}()
	return ch
}
