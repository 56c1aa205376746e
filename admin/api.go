package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/queue"
	"github.com/relaymail/relay/spool"
)

// The JSON API. Reads are GET; writes are POST with a JSON body (possibly
// {}), answered with the resource's new state. Errors are
// {"error": "..."} with a fitting HTTP status.

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// APIError is the body of an API error answer.
type APIError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, APIError{Error: msg})
}

func (s *Server) apiProfiles(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.profiles())
}

func (s *Server) apiProfile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, ok := s.profileInfo(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no profile is named %q", name))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) apiTest(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := s.profile(name)
	if p == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no profile is named %q", name))
		return
	}
	req := defaultTest(p)
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "cannot read the request: "+err.Error())
		return
	}
	if req.To == "" {
		writeError(w, http.StatusBadRequest, `"to" is required`)
		return
	}
	res := s.sendTest(r.Context(), p, req)
	writeJSON(w, res.status, res)
}

func (s *Server) apiTokens(w http.ResponseWriter, r *http.Request) {
	out := []oauth.Status{}
	if s.tokens != nil {
		out = append(out, s.tokens.Statuses()...)
	}
	writeJSON(w, http.StatusOK, out)
}

// apiTokenProfile finds the token status of an OAuth2 profile, or answers
// the error itself.
func (s *Server) apiTokenProfile(w http.ResponseWriter, r *http.Request) (oauth.Status, bool) {
	name := r.PathValue("name")
	p := s.profile(name)
	switch {
	case p == nil:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no profile is named %q", name))
		return oauth.Status{}, false
	case !p.IsOAuth2():
		writeError(w, http.StatusNotFound, fmt.Sprintf("profile %q authenticates with %s, not OAuth2", name, p.AuthMethod()))
		return oauth.Status{}, false
	}
	st, ok := tokenStatus(s.tokens, name)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("OAuth2 tokens of profile %q are not managed by this server", name))
		return oauth.Status{}, false
	}
	return st, true
}

func (s *Server) apiToken(w http.ResponseWriter, r *http.Request) {
	if st, ok := s.apiTokenProfile(w, r); ok {
		writeJSON(w, http.StatusOK, st)
	}
}

// TokenRefreshResult is the answer of POST /api/tokens/NAME/refresh.
type TokenRefreshResult struct {
	Refreshed bool         `json:"refreshed"`
	Error     string       `json:"error,omitempty"`
	Token     oauth.Status `json:"token"`
}

func (s *Server) apiTokenRefresh(w http.ResponseWriter, r *http.Request) {
	st, ok := s.apiTokenProfile(w, r)
	if !ok {
		return
	}
	if !st.CanRefresh() {
		writeJSON(w, http.StatusConflict, TokenRefreshResult{Error: "interactive profile without a refresh token: grant a new token first", Token: st})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.sendTO)
	defer cancel()
	err := s.tokens.Refresh(ctx, st.Profile)
	st, _ = tokenStatus(s.tokens, st.Profile)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, TokenRefreshResult{Error: err.Error(), Token: st})
		return
	}
	s.logger.Info("access token refreshed through the API", "profile", st.Profile)
	writeJSON(w, http.StatusOK, TokenRefreshResult{Refreshed: true, Token: st})
}

// GrantStart is the answer of POST /api/tokens/NAME/grant: the URL to open
// in a browser. The redirect comes back to this server's /oauth2/callback.
type GrantStart struct {
	Profile string `json:"profile"`
	AuthURL string `json:"auth_url"`
}

func (s *Server) apiQueue(w http.ResponseWriter, r *http.Request) {
	q := s.relay.Queue()
	if q == nil {
		writeError(w, http.StatusNotFound, errNoQueue.Error())
		return
	}
	envs, err := q.List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list the queue: "+err.Error())
		return
	}
	if envs == nil {
		envs = []*spool.Envelope{}
	}
	writeJSON(w, http.StatusOK, envs)
}

// RetryResult is the answer of POST /api/queue/ID/retry.
type RetryResult struct {
	Retried int `json:"retried"`
}

func (s *Server) apiQueueRetry(w http.ResponseWriter, r *http.Request) {
	n, err := s.retry(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, queueErrStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, RetryResult{Retried: n})
}

// DeleteResult is the answer of POST /api/queue/ID/delete.
type DeleteResult struct {
	Deleted string `json:"deleted"`
}

func (s *Server) apiQueueDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.delete(id); err != nil {
		writeError(w, queueErrStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, DeleteResult{Deleted: id})
}

func queueErrStatus(err error) int {
	switch {
	case errors.Is(err, spool.ErrNotFound), errors.Is(err, errNoQueue):
		return http.StatusNotFound
	case errors.Is(err, spool.ErrBadID), errors.Is(err, errNoID):
		return http.StatusBadRequest
	case errors.Is(err, queue.ErrInDelivery):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
