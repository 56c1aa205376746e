package admin

import (
	"context"
	"fmt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/relay"
	"github.com/relaymail/relay/upstream"
)

// oauthTransport is the transport of an OAuth2 profile: XOAUTH2 with the
// manager's tokens. Without a manager (tests with fake tokens) it cannot
// open connections.
func oauthTransport(m *oauth.Manager, p *config.Profile) (relay.Transport, error) {
	if m == nil {
		return failingTransport{fmt.Errorf("profile %q: no token manager in this test", p.Name)}, nil
	}
	src := m.Source(p.Name)
	if src == nil {
		return nil, fmt.Errorf("profile %q: no token source", p.Name)
	}
	s, err := upstream.New(p, upstream.Options{Tokens: src})
	if err != nil {
		return nil, err
	}
	return relay.SenderTransport(s), nil
}

type failingTransport struct{ err error }

func (f failingTransport) Open(context.Context) (relay.Delivery, error) { return nil, f.err }
