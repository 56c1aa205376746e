package relay

import (
	"context"
	"io"

	"github.com/relaymail/relay/config"
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
	// UTF8, BodyType).
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
