package oauth

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// CompleteRedirect finishes profile's authorization code grant with the
// address a browser ended on, pasted by the person who consented: the
// redirect URI with code and state (or error) in its query, as
// /oauth2/callback would have received it. state and PKCE are checked as
// there; a state of another profile's grant is refused and stays usable.
func (m *Manager) CompleteRedirect(ctx context.Context, profile, pasted string) error {
	q, err := redirectQuery(pasted)
	if err != nil {
		return &GrantError{Profile: profile, Msg: err.Error()}
	}
	state := q.Get("state")
	if state == "" {
		return &GrantError{Profile: profile, Msg: "the address carries no state; paste the whole address from the browser's address bar"}
	}
	m.mu.Lock()
	g := m.pending[state]
	m.mu.Unlock()
	if g != nil && g.profile != profile {
		return &GrantError{Profile: profile, Msg: "the address belongs to a grant of profile " + g.profile}
	}
	if e := q.Get("error"); e != "" {
		if m.DenyGrant(state, e, q.Get("error_description")) == "" {
			return &GrantError{Profile: profile, Msg: "unknown, used or expired state; start the grant again"}
		}
		return &TokenError{Profile: profile, NeedsAction: true, Code: clean(e, 100), Description: clean(q.Get("error_description"), 500)}
	}
	_, err = m.CompleteGrant(ctx, state, q.Get("code"))
	return err
}

// redirectQuery reads the query of a pasted redirect: a whole URL, or
// only its query ("code=...&state=...").
func redirectQuery(pasted string) (url.Values, error) {
	s := strings.TrimSpace(pasted)
	if s == "" {
		return nil, errors.New("nothing was pasted")
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 && strings.Contains(s[:i], "/") {
		s = s[i+1:]
	} else {
		s = strings.TrimPrefix(s, "?")
	}
	q, err := url.ParseQuery(s)
	if err != nil {
		return nil, errors.New("the pasted text is not an address with a query: " + clean(err.Error(), 200))
	}
	return q, nil
}
