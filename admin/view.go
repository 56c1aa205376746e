package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/relay"
)

// ProfileInfo is one profile as the index page and /api/profiles show it.
// It holds no secret.
type ProfileInfo struct {
	Name         string        `json:"name"`
	Description  string        `json:"description,omitempty"`
	Kind         string        `json:"kind"`
	Upstream     string        `json:"upstream"`
	Auth         string        `json:"auth"`
	Delivery     string        `json:"delivery"`
	Username     string        `json:"username,omitempty"`
	OAuth2Client string        `json:"oauth2_client,omitempty"`
	Interactive  bool          `json:"interactive,omitempty"`
	Token        *oauth.Status `json:"token,omitempty"` // OAuth2 profiles only
	QueueDepth   int           `json:"queue_depth"`
	LastDelivery time.Time     `json:"last_delivery,omitzero"`
	LastError    string        `json:"last_error,omitempty"`
	// LastErrorHint is one line on how to fix LastError, when it is a
	// usual misconfiguration (Exchange's 535 5.7.3, ...).
	LastErrorHint string    `json:"last_error_hint,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
}

// OAuth2 tells whether the profile authenticates with XOAUTH2.
func (p ProfileInfo) OAuth2() bool { return p.OAuth2Client != "" }

// profiles describes every profile of the configuration in effect.
func (s *Server) profiles() []ProfileInfo {
	cfg := s.relay.Config()
	depth := s.queueDepths()
	var tokens map[string]oauth.Status
	if s.tokens != nil {
		tokens = make(map[string]oauth.Status)
		for _, st := range s.tokens.Statuses() {
			tokens[st.Profile] = st
		}
	}
	out := make([]ProfileInfo, 0, len(cfg.Profiles))
	for _, p := range cfg.Profiles {
		info := ProfileInfo{
			Name:        p.Name,
			Description: p.Description,
			Kind:        p.Kind,
			Upstream:    p.Upstream(),
			Auth:        p.AuthMethod(),
			Delivery:    p.Delivery,
			Username:    p.Username,
			QueueDepth:  depth[p.Name],
		}
		if p.IsOAuth2() {
			info.OAuth2Client, info.Interactive = p.OAuth2Client, p.Interactive
			if st, ok := tokens[p.Name]; ok {
				info.Token = &st
			}
		}
		st := s.relay.Stats(p.Name)
		info.LastDelivery, info.LastError, info.LastErrorAt = st.LastDelivery, st.LastError, st.LastErrorAt
		info.LastErrorHint = st.LastErrorHint
		out = append(out, info)
	}
	return out
}

func (s *Server) profileInfo(name string) (ProfileInfo, bool) {
	for _, p := range s.profiles() {
		if p.Name == name {
			return p, true
		}
	}
	return ProfileInfo{}, false
}

// queueDepths counts queued messages by profile.
func (s *Server) queueDepths() map[string]int {
	out := map[string]int{}
	q := s.relay.Queue()
	if q == nil {
		return out
	}
	envs, err := q.List()
	if err != nil {
		s.logger.Error("cannot list the queue", "error", err)
		return out
	}
	for _, e := range envs {
		out[e.Profile]++
	}
	return out
}

// TestRequest is a test email to send through a profile.
type TestRequest struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// TestResult is the outcome of a test email.
type TestResult struct {
	Sent    bool   `json:"sent"`
	Profile string `json:"profile"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	// Reply is the upstream's answer to the end of DATA on success.
	Reply string `json:"reply,omitempty"`
	// Error is why the email was not sent: the upstream's reply, the
	// token error, or a bad address; Hint is one line on how to fix it,
	// for the usual misconfigurations.
	Error string `json:"error,omitempty"`
	Hint  string `json:"hint,omitempty"`

	status int
}

// defaultTest is the test email the test page starts with.
func defaultTest(p *config.Profile) TestRequest {
	return TestRequest{
		From:    relay.DefaultFrom(p),
		Subject: relay.TestSubject,
		Body:    fmt.Sprintf("This is a test email sent by relay through the profile %q (%s).", p.Name, p.Upstream()),
	}
}

// sendTest sends a test email through p's transport at once, without the
// queue. relay.ComposeText builds it, so no field can add a header.
func (s *Server) sendTest(ctx context.Context, p *config.Profile, req TestRequest) TestResult {
	res := TestResult{Profile: p.Name, status: http.StatusOK}
	msg, err := relay.ComposeText(req.From, req.To, req.Subject, req.Body, s.now())
	if err != nil {
		res.Error, res.status = "not sent: "+err.Error(), http.StatusBadRequest
		return res
	}
	res.From, res.To = msg.From, msg.To
	t := s.relay.Transport(p.Name)
	if t == nil {
		res.Error, res.status = fmt.Sprintf("not sent: profile %q has no transport", p.Name), http.StatusInternalServerError
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, s.sendTO)
	defer cancel()
	log := s.logger.With("profile", p.Name, "from", msg.From, "to", msg.To)
	reply, err := relay.SendTest(ctx, t, msg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (after %v)", err, s.sendTO)
		}
		attrs := []any{"error", err.Error()}
		if res.Hint = oauth.ReplyHint(err.Error()); res.Hint != "" {
			attrs = append(attrs, "hint", res.Hint)
		}
		log.Warn("test email not sent", attrs...)
		res.Error, res.status = "not sent: "+err.Error(), http.StatusBadGateway
		return res
	}
	res.Sent, res.Reply = true, "250 "+reply
	log.Info("test email sent", "reply", reply)
	return res
}
