package admin

import (
	"context"

	"github.com/relaymail/relay/relay"
)

// failingTransport is the transport of an OAuth2 profile in a test without
// a token manager (tests with fake tokens): it cannot open connections.
type failingTransport struct{ err error }

func (f failingTransport) Open(context.Context) (relay.Delivery, error) { return nil, f.err }
