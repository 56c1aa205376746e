package relay

import (
	"context"
	"fmt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/queue"
)

// queueProfiles is what the delivery queue gets of the server: the
// configuration in effect and the profiles' transports.
type queueProfiles struct{ s *Server }

func (p queueProfiles) Config() *config.Config { return p.s.Config() }

func (p queueProfiles) Open(ctx context.Context, profile string) (queue.Conn, error) {
	t := p.s.Transport(profile)
	if t == nil {
		return nil, fmt.Errorf("profile %q has no transport", profile)
	}
	d, err := t.Open(ctx)
	if err != nil {
		return nil, err
	}
	return d, nil
}
