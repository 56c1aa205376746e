package admin

import (
	"context"
	"fmt"

	"github.com/relaymail/relay/oauth"
)

// OAuthTokens makes the oauth package's Manager the pages' Tokens.
func OAuthTokens(m *oauth.Manager) Tokens { return managerTokens{m} }

type managerTokens struct{ m *oauth.Manager }

func (t managerTokens) Statuses() []TokenStatus {
	sts := t.m.Statuses()
	out := make([]TokenStatus, 0, len(sts))
	for _, st := range sts {
		var grant *GrantState
		if d := st.Device; d != nil {
			grant = &GrantState{Method: "device", State: d.State, UserCode: d.UserCode, VerificationURI: d.VerificationURI, Error: d.Error, Hint: d.Hint}
		}
		out = append(out, TokenStatus{
			Profile:         st.Profile,
			Interactive:     st.Interactive,
			State:           st.State,
			Expiry:          st.Expiry,
			HasRefreshToken: st.HasRefreshToken,
			LastError:       st.LastError,
			Hint:            st.Hint,
			DeviceSignIn:    st.DeviceSignIn,
			Grant:           grant,
			LastErrorAt:     st.LastErrorAt,
			LastRefresh:     st.LastRefresh,
			Requests:        st.Requests,
			Failures:        st.Failures,
		})
	}
	return out
}

func (t managerTokens) Refresh(ctx context.Context, profile string) error {
	s := t.m.Source(profile)
	if s == nil {
		return fmt.Errorf("profile %q is not an OAuth2 profile", profile)
	}
	return s.Refresh(ctx)
}

func (t managerTokens) StartGrant(profile string) (string, error) { return t.m.StartGrant(profile) }

func (t managerTokens) CompleteGrant(ctx context.Context, state, code string) (string, error) {
	return t.m.CompleteGrant(ctx, state, code)
}

func (t managerTokens) DenyGrant(state, code, description string) string {
	return t.m.DenyGrant(state, code, description)
}

func (t managerTokens) StartDevice(ctx context.Context, profile string) (DeviceStart, error) {
	g, err := t.m.StartDevice(ctx, profile)
	if err != nil {
		return DeviceStart{}, err
	}
	return DeviceStart{Profile: g.Profile, Method: "device", UserCode: g.UserCode, VerificationURI: g.VerificationURI,
		ExpiresIn: g.ExpiresIn, Interval: g.Interval, Message: g.Message}, nil
}

func (t managerTokens) CompleteRedirect(ctx context.Context, profile, redirectURL string) error {
	return t.m.CompleteRedirect(ctx, profile, redirectURL)
}
