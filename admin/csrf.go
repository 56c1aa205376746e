package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"mime"
	"net/http"
)

// CSRF protection of the forms: a double-submit cookie bound to the
// process. The browser holds a random cookie; each form carries the HMAC of
// that cookie under a secret that never leaves this process. A page on
// another site can neither read the cookie nor compute the HMAC, and a
// token from a previous run of relay does not work.
//
// http.CrossOriginProtection (routes) refuses cross-origin writes by
// Sec-Fetch-Site or Origin, but lets through a request that carries
// neither, as browsers from before 2020 send a cross-site form post; the
// token refuses those too, so both stay.
const (
	csrfCookie = "relay_csrf"
	csrfField  = "csrf"
	// csrfCookieLen is the length of rand.Text: 26 base32 characters, 130
	// bits. A shorter cookie is not one this server set.
	csrfCookieLen = 26
)

// csrfToken returns the token for the forms of the page being rendered,
// setting the browser's cookie first if it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < csrfCookieLen {
		c = &http.Cookie{Name: csrfCookie, Value: rand.Text(), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
		http.SetCookie(w, c)
	}
	return s.csrfFor(c.Value)
}

func (s *Server) csrfFor(cookie string) string {
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte("csrf\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// validCSRF checks the form's token against the browser's cookie.
func (s *Server) validCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < csrfCookieLen {
		return false
	}
	got := r.PostFormValue(csrfField)
	return got != "" && hmac.Equal([]byte(got), []byte(s.csrfFor(c.Value)))
}

// form wraps the handler of a page's POST: a form of at most 1 MiB with a
// valid CSRF token, or 403.
func (s *Server) form(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "Bad Request: cannot read the form", http.StatusBadRequest)
			return
		}
		if !s.validCSRF(r) {
			s.logger.Warn("form refused: missing or invalid CSRF token", "path", r.URL.Path, "remote", r.RemoteAddr)
			http.Error(w, "Forbidden: the form's CSRF token is missing or stale; reload the page and try again", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// api wraps the handler of an API write: the request must declare a JSON
// body (Content-Type: application/json), which an HTML form on another site
// cannot send, and which a script there cannot send without a CORS
// preflight that this server never grants.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "API writes need Content-Type: application/json")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		h(w, r)
	}
}
