package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
)

// Sign-in without a browser on the relay host: the device code
// (RFC 8628) and the redirect address pasted from a browser elsewhere.

// grantRequest is the optional body of POST /api/tokens/NAME/grant.
type grantRequest struct {
	Method string `json:"method"` // "" or "code": authorization code; "device": device code
}

// GrantComplete is the answer of POST /api/tokens/NAME/grant/complete.
type GrantComplete struct {
	Granted bool   `json:"granted"`
	Error   string `json:"error,omitempty"`
	Hint    string `json:"hint,omitempty"`
}

// maxPaste bounds a pasted redirect address; real ones are under 4 KiB.
const maxPaste = 64 << 10

func (s *Server) apiTokenGrant(w http.ResponseWriter, r *http.Request) {
	st, ok := s.apiTokenProfile(w, r)
	if !ok {
		return
	}
	var req grantRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxPaste)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "cannot read the request: "+err.Error())
		return
	}
	if !st.CanGrant() {
		writeError(w, http.StatusConflict, fmt.Sprintf("profile %q uses client credentials (interactive = false) and needs no grant; refresh its token instead", st.Profile))
		return
	}
	switch req.Method {
	case "", "code":
		u, err := s.tokens.StartGrant(st.Profile)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, GrantStart{Profile: st.Profile, AuthURL: u})
	case "device":
		d, err := s.tokens.StartDevice(r.Context(), st.Profile)
		if err != nil {
			s.logger.Warn("device sign-in not started", "profile", st.Profile, "error", err.Error())
			writeError(w, grantErrStatus(err), withHint(err))
			return
		}
		s.logger.Info("device sign-in started through the API", "profile", st.Profile)
		writeJSON(w, http.StatusOK, d)
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown method %q; use \"device\", or none for the authorization code grant", req.Method))
	}
}

func (s *Server) apiTokenGrantComplete(w http.ResponseWriter, r *http.Request) {
	st, ok := s.apiTokenProfile(w, r)
	if !ok {
		return
	}
	var req struct {
		RedirectURL string `json:"redirect_url"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxPaste)).Decode(&req); err != nil || req.RedirectURL == "" {
		writeError(w, http.StatusBadRequest, `give {"redirect_url": "the address the browser ended on"}`)
		return
	}
	// The code is spent once sent: finish even if the client goes away.
	if err := s.tokens.CompleteRedirect(context.WithoutCancel(r.Context()), st.Profile, req.RedirectURL); err != nil {
		s.logger.Warn("pasted redirect refused", "profile", st.Profile, "error", err.Error())
		writeJSON(w, grantErrStatus(err), GrantComplete{Error: err.Error(), Hint: hintOf(err)})
		return
	}
	s.logger.Info("authorization grant completed with a pasted redirect", "profile", st.Profile)
	writeJSON(w, http.StatusOK, GrantComplete{Granted: true})
}

// postTokenDevice is the Manage Token page's device code button.
func (s *Server) postTokenDevice(w http.ResponseWriter, r *http.Request) {
	p, st, ok := s.tokenProfile(w, r)
	if !ok {
		return
	}
	if !st.CanGrant() {
		s.renderToken(w, r, http.StatusConflict, p, st, "", "This profile uses client credentials (interactive = false); it needs no sign-in. Use Refresh Token.")
		return
	}
	if _, err := s.tokens.StartDevice(r.Context(), p.Name); err != nil {
		s.grantStepFailed(w, r, p, "device sign-in not started", "Cannot start the device sign-in: ", err)
		return
	}
	s.logger.Info("device sign-in started from the admin page", "profile", p.Name)
	http.Redirect(w, r, "/profiles/"+url.PathEscape(p.Name)+"/token", http.StatusSeeOther)
}

// postTokenPaste is the Manage Token page's field for the address a
// browser elsewhere ended on.
func (s *Server) postTokenPaste(w http.ResponseWriter, r *http.Request) {
	p, st, ok := s.tokenProfile(w, r)
	if !ok {
		return
	}
	pasted := r.PostFormValue("redirect_url")
	if strings.TrimSpace(pasted) == "" {
		s.renderToken(w, r, http.StatusBadRequest, p, st, "", "Paste the whole address from the browser's address bar.")
		return
	}
	if err := s.tokens.CompleteRedirect(context.WithoutCancel(r.Context()), p.Name, pasted); err != nil {
		s.grantStepFailed(w, r, p, "pasted redirect refused", "The pasted address did not complete the grant: ", err)
		return
	}
	s.logger.Info("authorization grant completed with a pasted redirect", "profile", p.Name)
	http.Redirect(w, r, "/profiles/"+url.PathEscape(p.Name)+"/token?done=granted", http.StatusSeeOther)
}

// grantStepFailed logs a refused sign-in step once and shows the Manage
// Token page with the error and its hint.
func (s *Server) grantStepFailed(w http.ResponseWriter, r *http.Request, p *config.Profile, logMsg, pageMsg string, err error) {
	s.logger.Warn(logMsg, "profile", p.Name, "error", err.Error())
	st, _ := tokenStatus(s.tokens, p.Name)
	s.renderToken(w, r, grantErrStatus(err), p, st, "", pageMsg+withHint(err))
}

// hintOf is the one-line hint of a token error, or "".
func hintOf(err error) string {
	var te *oauth.TokenError
	if errors.As(err, &te) {
		return te.Hint()
	}
	return ""
}

// withHint is err's text, and its hint when it has one.
func withHint(err error) string {
	if h := hintOf(err); h != "" {
		return err.Error() + " (" + h + ")"
	}
	return err.Error()
}

// grantErrStatus is the HTTP status of a failed grant step: 502 when the
// authorization server could not be reached, 400 when it or relay refused.
func grantErrStatus(err error) int {
	var te *oauth.TokenError
	if errors.As(err, &te) && te.Temporary {
		return http.StatusBadGateway
	}
	return http.StatusBadRequest
}
