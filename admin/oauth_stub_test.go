package admin

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/relay"
)

// oauthTransport is the transport of an OAuth2 profile. Until the oauth
// package is merged, it cannot open connections.
func oauthTransport(tokens Tokens, p *config.Profile) (relay.Transport, error) {
	return failingTransport{fmt.Errorf("profile %q: no OAuth2 support in this build yet", p.Name)}, nil
}

type failingTransport struct{ err error }

func (f failingTransport) Open(context.Context) (relay.Delivery, error) { return nil, f.err }

// fakeTokens is a token manager with fixed states, for the seed's button
// rules. Refresh makes a token valid; grants go to authURL.
type fakeTokens struct {
	mu       sync.Mutex
	statuses []TokenStatus
	authURL  string
	refresh  error
}

func (f *fakeTokens) Statuses() []TokenStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]TokenStatus(nil), f.statuses...)
}

func (f *fakeTokens) Refresh(_ context.Context, profile string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.statuses {
		if f.statuses[i].Profile == profile {
			f.statuses[i].Requests++
			if f.refresh != nil {
				f.statuses[i].Failures++
				f.statuses[i].LastError = f.refresh.Error()
				return f.refresh
			}
			f.statuses[i].State = StateValid
		}
	}
	return nil
}

func (f *fakeTokens) StartGrant(profile string) (string, error) {
	return f.authURL + "?state=" + url.QueryEscape(profile), nil
}

func (f *fakeTokens) CompleteGrant(_ context.Context, state, code string) (string, error) {
	return state, f.Refresh(context.Background(), state)
}

func (f *fakeTokens) DenyGrant(state, code, description string) string { return state }
