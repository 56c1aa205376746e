// Package admin is relay's admin listener: the pages a person uses in a
// browser (the profiles, the seed's Manage Token and test-email pages, the
// queue), the same data as JSON under /api/, Prometheus metrics at
// /metrics and liveness at /healthz. Plain net/http and html/template; the
// pages work without JavaScript.
//
// The listener is meant for loopback. With admin.password_hash set, every
// request but /healthz needs HTTP basic auth with that password. Forms
// carry CSRF tokens, API writes need a JSON body, and cross-origin browser
// requests are refused, so another web site cannot act through a logged-in
// browser. No page or answer holds a password, client secret or token.
package admin

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/relay"
)

// Options are an admin Server's collaborators.
type Options struct {
	// Relay is the running server whose profiles, transports and queue
	// the pages show; required.
	Relay *relay.Server
	// Tokens is the OAuth2 token manager; nil without OAuth2 support.
	Tokens Tokens
	// Metrics counts message events (pass Metrics.Observe as
	// relay.Options.Events); default: a Metrics that only reads state.
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock for relative times on pages; default time.Now.
	Now func() time.Time
	// SendTimeout bounds a test email, token wait included; default 2
	// minutes (access_token_timeout is 120 s by default).
	SendTimeout time.Duration
}

// Server serves the admin pages, API and metrics.
type Server struct {
	relay   *relay.Server
	tokens  Tokens
	metrics *Metrics
	logger  *slog.Logger
	now     func() time.Time
	sendTO  time.Duration
	secret  []byte // per process: CSRF tokens and the password cache
	handler http.Handler
	http    *http.Server

	mu       sync.Mutex
	accepted map[[32]byte]string // HMAC of a password that matched → the hash it matched
}

// New makes the admin server for opts.Relay.
func New(opts Options) (*Server, error) {
	if opts.Relay == nil {
		return nil, errors.New("admin: Options.Relay is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 2 * time.Minute
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Server{
		relay:    opts.Relay,
		tokens:   opts.Tokens,
		metrics:  opts.Metrics,
		logger:   opts.Logger.With("component", "admin"),
		now:      opts.Now,
		sendTO:   opts.SendTimeout,
		secret:   make([]byte, 32),
		accepted: make(map[[32]byte]string),
	}
	rand.Read(s.secret)
	if err := s.metrics.register(s); err != nil {
		return nil, fmt.Errorf("admin: register metrics: %w", err)
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the admin server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	srv := s.http
	s.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the listener and waits, until ctx ends, for requests in
// progress; then it closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.http
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Pages.
	mux.HandleFunc("GET /{$}", s.pageIndex)
	mux.HandleFunc("GET /profiles/{name}/token", s.pageToken)
	mux.HandleFunc("POST /profiles/{name}/token/refresh", s.form(s.postTokenRefresh))
	mux.HandleFunc("POST /profiles/{name}/token/grant", s.form(s.postTokenGrant))
	mux.HandleFunc("POST /profiles/{name}/token/device", s.form(s.postTokenDevice))
	mux.HandleFunc("POST /profiles/{name}/token/paste", s.form(s.postTokenPaste))
	mux.HandleFunc("GET /profiles/{name}/test", s.pageTest)
	mux.HandleFunc("POST /profiles/{name}/test", s.form(s.postTest))
	mux.HandleFunc("GET /queue", s.pageQueue)
	mux.HandleFunc("POST /queue/retry", s.form(s.postQueueRetry))
	mux.HandleFunc("POST /queue/delete", s.form(s.postQueueDelete))
	mux.HandleFunc("GET /oauth2/callback", s.callback)
	mux.HandleFunc("GET /static/admin.css", serveCSS)
	// JSON API.
	mux.HandleFunc("GET /api/profiles", s.apiProfiles)
	mux.HandleFunc("GET /api/profiles/{name}", s.apiProfile)
	mux.HandleFunc("POST /api/profiles/{name}/test", s.api(s.apiTest))
	mux.HandleFunc("GET /api/tokens", s.apiTokens)
	mux.HandleFunc("GET /api/tokens/{name}", s.apiToken)
	mux.HandleFunc("POST /api/tokens/{name}/refresh", s.api(s.apiTokenRefresh))
	mux.HandleFunc("POST /api/tokens/{name}/grant", s.api(s.apiTokenGrant))
	mux.HandleFunc("POST /api/tokens/{name}/grant/complete", s.api(s.apiTokenGrantComplete))
	mux.HandleFunc("GET /api/queue", s.apiQueue)
	mux.HandleFunc("POST /api/queue/{id}/retry", s.api(s.apiQueueRetry))
	mux.HandleFunc("POST /api/queue/{id}/delete", s.api(s.apiQueueDelete))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
	// Machines.
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})

	// Cross-origin browser requests that change state are refused
	// (Sec-Fetch-Site and Origin), before anything else runs.
	cop := http.NewCrossOriginProtection()
	return s.secure(cop.Handler(mux))
}

// secure sets the headers every answer carries, refuses requests whose
// Host is not this machine when there is no password (DNS rebinding), and
// demands HTTP basic auth when admin.password_hash is set.
func (s *Server) secure(next http.Handler) http.Handler {
	return securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		a := s.relay.Config().Admin
		switch {
		case a.PasswordHash != "" && r.URL.Path == "/oauth2/callback":
			// The authorization server's redirect needs no password: it
			// only completes a grant that a logged-in user or `relay token
			// grant` started (its state is unguessable and spent once, and
			// the PKCE verifier never leaves this process), and it reveals
			// nothing; the page it redirects to asks for the password. A
			// browser sent there by `relay token grant` has not logged in,
			// and may come by whatever name redirect_url gives.
		case a.PasswordHash == "":
			if !s.localHost(r.Host, a.Listen) {
				s.logger.Warn("request refused: unexpected Host header", "host", r.Host, "remote", r.RemoteAddr)
				http.Error(w, "Forbidden: this admin listener answers only to a loopback host name; set admin.password_hash to reach it by another name", http.StatusForbidden)
				return
			}
		case !s.authorized(r, a.PasswordHash):
			h.Set("WWW-Authenticate", `Basic realm="relay admin", charset="UTF-8"`)
			http.Error(w, "Unauthorized: give the admin password (admin.password_hash)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// securityHeaders sets the headers every answer carries: no sniffing, no
// frames, no Referer (a callback URL holds a code), no caching, and a
// policy that allows only the pages' own stylesheet.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether a request's Host names this machine's
// loopback interface or the configured listen address, so that a web page
// whose name resolves to 127.0.0.1 (DNS rebinding) cannot read the pages.
func (s *Server) localHost(hostport, listen string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if config.IsLoopbackHost(host) {
		return true
	}
	if lh, _, err := net.SplitHostPort(listen); err == nil && lh != "" && strings.EqualFold(lh, host) {
		return true
	}
	return false
}

// authorized checks HTTP basic auth against the bcrypt hash; any user
// name is accepted. A password that matched once is remembered by its HMAC
// under the per-process secret, so that each page does not cost a bcrypt.
func (s *Server) authorized(r *http.Request, hash string) bool {
	_, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte("password\x00" + pass))
	var key [32]byte
	copy(key[:], mac.Sum(nil))
	s.mu.Lock()
	known := s.accepted[key] == hash
	s.mu.Unlock()
	if known {
		return true
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil {
		s.logger.Warn("admin login failed", "remote", r.RemoteAddr)
		return false
	}
	s.mu.Lock()
	if len(s.accepted) >= 16 {
		clear(s.accepted)
	}
	s.accepted[key] = hash
	s.mu.Unlock()
	return true
}

// profile returns the named profile of the configuration in effect.
func (s *Server) profile(name string) *config.Profile {
	return s.relay.Config().Profile(name)
}
