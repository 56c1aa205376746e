package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/relay"
	"github.com/relaymail/relay/upstream"
)

// runTest sends a test email through a profile at once, without the
// queue, and exits 0 only when the upstream accepted it.
func runTest(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("test", stderr)
	cfgFlag := fs.String("config", "", "configuration file")
	profile := fs.String("profile", "", "the profile to send through (required)")
	to := fs.String("to", "", "recipient address (required)")
	from := fs.String("from", "", "sender address (default: the profile's username, or relay@<hostname>)")
	subject := fs.String("subject", relay.TestSubject, "subject")
	verbose := fs.Bool("v", false, "print the SMTP dialogue (AUTH redacted)")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	if *profile == "" || *to == "" {
		fmt.Fprintln(stderr, "relay test: -profile and -to are required")
		fs.Usage()
		return exitFail
	}
	cfg, err := loadConfig(*cfgFlag, stderr)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	p := cfg.Profile(*profile)
	if p == nil {
		fmt.Fprintf(stderr, "relay test: no profile is named %q in %s\n", *profile, cfg.File)
		return exitFail
	}
	if *from == "" {
		*from = relay.DefaultFrom(p)
	}
	host, _ := os.Hostname()
	body := fmt.Sprintf("This is a test email sent by relay on %s through the profile %q (%s).\n", host, p.Name, p.Upstream())
	msg, err := relay.ComposeText(*from, *to, *subject, body, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "relay test: %v\n", err)
		return exitFail
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t, done, err := testTransport(cfg, p, logger, *verbose)
	if err != nil {
		fmt.Fprintf(stderr, "relay test: not sent: %v\n", err)
		return exitFail
	}
	defer done()
	reply, err := relay.SendTest(ctx, t, msg)
	var refused *relay.RecipientError
	if errors.As(err, &refused) {
		fmt.Fprintf(stderr, "relay test: recipient refused: %v\n", refused.Err)
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "relay test: not sent: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "relay test: sent from %s to %s through %s: %s\n", msg.From, msg.To, p.Name, reply)
	return exitOK
}

// testTransport makes p's transport for one test email; done releases
// it. OAuth2 profiles use the tokens stored in the data directory (and
// store what they renew).
func testTransport(cfg *config.Config, p *config.Profile, logger *slog.Logger, verbose bool) (t relay.Transport, done func(), err error) {
	var tokens *oauth.Manager
	done = func() {}
	if p.IsOAuth2() {
		if tokens, err = oauth.NewManager(cfg, oauth.Options{Logger: logger}); err != nil {
			return nil, nil, err
		}
		done = func() { tokens.Close() }
	}
	t, err = relay.Transports(upstream.Options{Logger: logger, Debug: verbose}, tokens)(p)
	if err != nil {
		done()
		return nil, nil, err
	}
	return t, done, nil
}
