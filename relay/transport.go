package relay

import (
	"context"
	"fmt"
	"io"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/upstream"
)

// Transport carries messages for one profile: to its upstream server, or
// into a Maildir.
type Transport interface {
	// Open starts a connection for one or more messages.
	Open(ctx context.Context) (Delivery, error)
}

// Delivery is one open connection of a Transport; *upstream.Conn is one.
// It carries one message after another and is not safe for concurrent
// use.
type Delivery interface {
	// Mail, Rcpt and Data are one transaction step by step, for clients
	// that wait for the upstream's own answers (delivery = "direct"). Mail
	// uses the envelope sender and MAIL parameters of msg (From, Size,
	// UTF8 for the sender, UTF8Declared, BodyType); Rcpt refuses a
	// recipient the transaction cannot carry (see upstream.Conn.Rcpt).
	Mail(ctx context.Context, msg *upstream.Message) error
	Rcpt(ctx context.Context, to string) error
	Data(ctx context.Context, body io.Reader) (reply string, err error)
	Reset(ctx context.Context) error
	// Send is a whole transaction, with an outcome per recipient.
	Send(ctx context.Context, msg *upstream.Message) (*upstream.Result, error)
	// Usable reports whether another message may follow.
	Usable() bool
	Close() error
}

// TransportFactory makes the transport of a profile.
type TransportFactory func(p *config.Profile) (Transport, error)

// Transports is the TransportFactory relay runs with: a profile of kind
// "maildir" writes its Maildir; every other profile gets an upstream.Sender
// made with base, and an OAuth2 profile takes its access tokens from
// tokens (an OAuth2 profile without a token source there is an error).
// The senders log with component=upstream.
func Transports(base upstream.Options, tokens *oauth.Manager) TransportFactory {
	if base.Logger != nil {
		base.Logger = base.Logger.With("component", "upstream")
	}
	return func(p *config.Profile) (Transport, error) {
		if p.Kind == config.KindMaildir {
			return NewMaildir(p.Path)
		}
		opts := base
		if p.IsOAuth2() {
			var src *oauth.TokenSource
			if tokens != nil {
				src = tokens.Source(p.Name)
			}
			if src == nil {
				return nil, fmt.Errorf("no token source for OAuth2 profile %q", p.Name)
			}
			opts.Tokens = src
		}
		s, err := upstream.New(p, opts)
		if err != nil {
			return nil, err
		}
		return SenderTransport(s), nil
	}
}

// SenderTransport adapts an upstream.Sender to a Transport.
func SenderTransport(s *upstream.Sender) Transport { return senderTransport{s} }

type senderTransport struct{ s *upstream.Sender }

func (t senderTransport) Open(ctx context.Context) (Delivery, error) {
	c, err := t.s.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return c, nil
}
