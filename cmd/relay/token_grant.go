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

// listenCallback receives the authorization server's redirect on
// admin.listen when no relay runs: the admin listener's own
// /oauth2/callback (admin.GrantCallback) over the command's token manager.
// stop ends it.
func (t *tokenCmd) listenCallback(m *oauth.Manager) (base string, stop func(), err error) {
	if t.cfg.Admin.Listen == "" {
		return "", nil, errors.New("admin.listen is off, so nothing can receive the authorization server's redirect; set it (default 127.0.0.1:8025), or paste the address the browser ends on")
	}
	ln, err := net.Listen("tcp", t.cfg.Admin.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("listen on admin.listen for the redirect: %w", err)
	}
	hs := &http.Server{Handler: admin.GrantCallback(m, t.logger()), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		hs.Shutdown(sctx)
	}, nil
}

// changed returns a channel closed at the next change of the profile's
// state, or nil when the tokens are elsewhere: then wait looks again every
// second.
func (t *tokenCmd) changed() <-chan struct{} {
	if l, ok := t.steer.(localTokens); ok {
		if s := l.m.Source(t.name); s != nil {
			return s.Changed()
		}
	}
	return nil
}

// complete finishes the grant with a pasted address.
func (t *tokenCmd) complete(ctx context.Context, pasted string) error {
	r, err := t.steer.CompleteGrant(ctx, t.name, pasted)
	if err != nil && r.Hint != "" {
		return fmt.Errorf("%w (%s)", err, r.Hint)
	}
	return err
}

// wait polls status until done says the grant ended, the pasted lines
// complete it, or grantWait passes.
func (t *tokenCmd) wait(ctx context.Context, pasted <-chan string, done func(oauth.Status) (bool, error)) int {
	for {
		changed := t.changed()
		st, err := t.steer.Token(ctx, t.name)
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
			if err := t.complete(ctx, line); err != nil {
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
	base := t.base
	if l, ok := t.steer.(localTokens); ok {
		var stop func()
		var err error
		if base, stop, err = t.listenCallback(l.m); err != nil {
			return t.fail(err)
		}
		defer stop()
	}
	u, err := t.steer.StartGrant(ctx, t.name)
	if err != nil {
		return t.fail(err)
	}
	fmt.Fprintf(t.stdout, "Open this URL in a browser and allow access for profile %s:\n\n  %s\n\n"+
		"Waiting (at most %v) for the authorization server to send the browser back to %s/oauth2/callback ...\n"+
		"If that browser cannot reach this machine, paste here the address it ended on and press Enter.\n", t.name, u, grantWait, base)
	return t.wait(ctx, pastedLines(stdin), func(st oauth.Status) (bool, error) {
		switch {
		case st.State == oauth.StateValid && st.LastRefresh.After(start):
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
	d, err := t.steer.StartDevice(ctx, t.name)
	if err != nil {
		var te *oauth.TokenError
		if errors.As(err, &te) && te.Hint() != "" {
			err = fmt.Errorf("%w (%s)", err, te.Hint())
		}
		return t.fail(err)
	}
	fmt.Fprintf(t.stdout, "%s\n\n  %s\n  code: %s\n\nWaiting (at most %s) for the sign-in ...\n", d.Message, d.VerificationURI, d.UserCode, time.Duration(d.ExpiresIn)*time.Second)
	return t.wait(ctx, nil, func(st oauth.Status) (bool, error) {
		g := st.Device
		switch {
		case g == nil || g.UserCode != d.UserCode || g.State == oauth.DevicePending:
			return false, nil
		case g.State == oauth.DeviceGranted:
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
