package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/relaymail/relay/oauth"
)

// endGrant ends the authorization code grant that the redirect r to
// /oauth2/callback names: it records the authorization server's refusal,
// or redeems the code (the token manager checks the state and PKCE). It
// returns the grant's profile ("" for an unknown state) and why the grant
// failed, a *refusedError when the server refused.
func endGrant(tokens Tokens, logger *slog.Logger, r *http.Request) (profile string, err error) {
	q := r.URL.Query()
	state := q.Get("state")
	if e := q.Get("error"); e != "" {
		profile = tokens.DenyGrant(state, e, q.Get("error_description"))
		return profile, &refusedError{code: e, description: q.Get("error_description")}
	}
	// The code is spent once sent: finish even if the browser goes away.
	profile, err = tokens.CompleteGrant(context.WithoutCancel(r.Context()), state, q.Get("code"))
	if err != nil {
		logger.Warn("authorization grant failed", "profile", profile, "error", err.Error())
		return profile, err
	}
	logger.Info("authorization grant completed", "profile", profile)
	return profile, nil
}

// refusedError is an authorization server's error redirect (RFC 6749
// §4.1.2.1): the user declined, or the server refused the request.
type refusedError struct{ code, description string }

func (e *refusedError) Error() string {
	if e.description == "" {
		return "the authorization server refused: " + e.code
	}
	return "the authorization server refused: " + e.code + ": " + e.description
}

// callbackMethod refuses what is not a GET: a HEAD must not spend the
// state of a grant.
func callbackMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", "GET")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// callback is the admin listener's redirect URI of interactive grants: it
// ends the grant and sends the browser back to the profile's Manage Token
// page, or shows it there why the grant failed.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	if !callbackMethod(w, r) {
		return
	}
	if s.tokens == nil {
		s.errorPage(w, r, http.StatusNotFound, "This server manages no OAuth2 tokens.")
		return
	}
	profile, err := endGrant(s.tokens, s.logger, r)
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		s.grantFailed(w, r, profile, "The authorization server refused the grant; see the last error below.")
	case err != nil:
		s.grantFailed(w, r, profile, "The grant failed: "+err.Error())
	default:
		http.Redirect(w, r, "/profiles/"+url.PathEscape(profile)+"/token?done=granted", http.StatusSeeOther)
	}
}

func (s *Server) grantFailed(w http.ResponseWriter, r *http.Request, profile, msg string) {
	p := s.profile(profile)
	st, ok := tokenStatus(s.tokens, profile)
	if p == nil || !ok {
		s.errorPage(w, r, http.StatusBadRequest, msg+" Start the grant again from the profile's Manage Token page.")
		return
	}
	s.renderToken(w, r, http.StatusBadRequest, p, st, "", msg)
}

// GrantCallback is what `relay token grant` serves on admin.listen when no
// relay runs: the same /oauth2/callback, whose page, with no Manage Token
// page to go back to, says how the grant ended; and the pages' stylesheet.
func GrantCallback(tokens Tokens, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "admin")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /static/admin.css", serveCSS)
	mux.HandleFunc("/oauth2/callback", func(w http.ResponseWriter, r *http.Request) {
		if !callbackMethod(w, r) {
			return
		}
		profile, err := endGrant(tokens, logger, r)
		b := pageBase{Title: "Token granted", Alone: true}
		status := http.StatusOK
		var te *oauth.TokenError
		switch {
		case err != nil && errors.As(err, &te) && te.Temporary:
			b.Title, b.Error, status = "Grant failed", grantMessage(profile, err), http.StatusBadGateway
		case err != nil:
			b.Title, b.Error, status = "Grant failed", grantMessage(profile, err), http.StatusBadRequest
		default:
			b.Flash = "Profile " + profile + " has a new access token"
			if st, ok := tokenStatus(tokens, profile); ok && st.HasRefreshToken {
				b.Flash += " and refresh token"
			}
			b.Flash += ". You may close this window."
		}
		renderPage(w, logger, status, "error", struct{ pageBase }{b})
	})
	return securityHeaders(mux)
}

func grantMessage(profile string, err error) string {
	msg := "The grant failed: " + err.Error()
	if profile != "" {
		msg = "Profile " + profile + ": " + msg
	}
	return msg
}
