package admin

import (
	"fmt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/upstream"
)

// oauth2Options sets the token source of an OAuth2 profile. Until the
// oauth package is merged there is none.
func oauth2Options(tokens Tokens, p *config.Profile, opts *upstream.Options) error {
	return fmt.Errorf("profile %q: no OAuth2 support in this build yet", p.Name)
}
