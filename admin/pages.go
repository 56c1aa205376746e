package admin

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/admin.css
var css []byte

var templates = parseTemplates("index", "token", "test", "queue", "error")

func parseTemplates(names ...string) map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	out := make(map[string]*template.Template, len(names))
	for _, n := range names {
		out[n] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+n+".html"))
	}
	return out
}

var funcs = template.FuncMap{
	// when formats a time for a page: "2026-11-25 08:21:13 UTC", or "—".
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05 MST")
	},
	// iso formats a time for a <time datetime> attribute.
	"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"pathEscape": url.PathEscape,
}

// relTime says how far t is from now: "in 59m", "3m ago".
func relTime(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	ago := d < 0
	if ago {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	if ago {
		return s + " ago"
	}
	return "in " + s
}

// pageBase is what every page's layout needs.
type pageBase struct {
	Title   string
	Nav     string // "profiles" or "queue": the current tab
	CSRF    string
	Flash   string
	Error   string
	Refresh string // meta refresh target, after a few seconds
	Now     time.Time
	// Alone: the page is served without the others (GrantCallback), so
	// it links to none.
	Alone bool
}

func (b pageBase) Rel(t time.Time) string { return relTime(t, b.Now) }

// render writes page name with data, whose pageBase the caller filled.
func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	renderPage(w, s.logger, status, name, data)
}

// renderPage writes page name with data, whose pageBase the caller filled.
func renderPage(w http.ResponseWriter, logger *slog.Logger, status int, name string, data any) {
	var buf bytes.Buffer
	if err := templates[name].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		logger.Error("cannot render a page", "page", name, "error", err)
		http.Error(w, "Internal Server Error: cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *Server) base(w http.ResponseWriter, r *http.Request, title, nav string) pageBase {
	return pageBase{Title: title, Nav: nav, CSRF: s.csrfToken(w, r), Now: s.now()}
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	b := s.base(w, r, http.StatusText(status), "")
	b.Error = msg
	s.render(w, status, "error", struct{ pageBase }{b})
}

func serveCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(css)
}

// Flash messages, chosen by a fixed code in the URL after a redirect, so
// that no link can put text of its own on a page.
var flashes = map[string]string{
	"refreshed": "A new access token arrived.",
	"granted":   "The authorization server granted a new token.",
	"retried":   "The message is due now; relay delivers it in a moment.",
	"retry-all": "Every queued message is due now; relay delivers them in a moment.",
	"deleted":   "The message was deleted from the queue.",
}

func flash(r *http.Request) string { return flashes[r.URL.Query().Get("done")] }

// ---- / ----

type indexPage struct {
	pageBase
	Profiles []ProfileInfo
	Queued   int
	Config   string
}

func (s *Server) pageIndex(w http.ResponseWriter, r *http.Request) {
	d := indexPage{pageBase: s.base(w, r, "Email profiles", "profiles"), Profiles: s.profiles(), Config: s.relay.Config().File}
	for _, p := range d.Profiles {
		d.Queued += p.QueueDepth
	}
	s.render(w, http.StatusOK, "index", d)
}

// ---- /profiles/NAME/token ----

type tokenPage struct {
	pageBase
	Profile *config.Profile
	Client  string
	Token   oauth.Status
}

// tokenProfile finds an OAuth2 profile for the token pages, or answers
// 404 itself.
func (s *Server) tokenProfile(w http.ResponseWriter, r *http.Request) (*config.Profile, oauth.Status, bool) {
	name := r.PathValue("name")
	p := s.profile(name)
	if p == nil {
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no profile named %q.", name))
		return nil, oauth.Status{}, false
	}
	if !p.IsOAuth2() {
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("Profile %q authenticates with %s; it has no OAuth2 token to manage.", name, p.AuthMethod()))
		return nil, oauth.Status{}, false
	}
	st, ok := tokenStatus(s.tokens, name)
	if !ok {
		s.errorPage(w, r, http.StatusServiceUnavailable, fmt.Sprintf("OAuth2 tokens of profile %q are not managed by this server.", name))
		return nil, oauth.Status{}, false
	}
	return p, st, true
}

func (s *Server) renderToken(w http.ResponseWriter, r *http.Request, status int, p *config.Profile, st oauth.Status, flashMsg, errMsg string) {
	d := tokenPage{pageBase: s.base(w, r, "Manage Token · "+p.Name, "profiles"), Profile: p, Client: p.OAuth2Client, Token: st}
	d.Flash, d.Error = flashMsg, errMsg
	if flashMsg != "" && st.State != oauth.StateValid || st.Device != nil && st.Device.State == oauth.DevicePending {
		// Right after a grant or refresh, and while a device sign-in is
		// pending: look again in a few seconds, as the seed's page does.
		d.Refresh = "/profiles/" + url.PathEscape(p.Name) + "/token"
	}
	s.render(w, status, "token", d)
}

func (s *Server) pageToken(w http.ResponseWriter, r *http.Request) {
	p, st, ok := s.tokenProfile(w, r)
	if !ok {
		return
	}
	s.renderToken(w, r, http.StatusOK, p, st, flash(r), "")
}

func (s *Server) postTokenRefresh(w http.ResponseWriter, r *http.Request) {
	p, st, ok := s.tokenProfile(w, r)
	if !ok {
		return
	}
	if !st.CanRefresh() {
		s.renderToken(w, r, http.StatusConflict, p, st, "", "This interactive profile holds no refresh token: grant a new token first.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.sendTO)
	defer cancel()
	if err := s.tokens.Refresh(ctx, p.Name); err != nil {
		st, _ = tokenStatus(s.tokens, p.Name)
		s.renderToken(w, r, http.StatusBadGateway, p, st, "", "Refresh failed: "+err.Error())
		return
	}
	s.logger.Info("access token refreshed from the admin page", "profile", p.Name)
	http.Redirect(w, r, "/profiles/"+url.PathEscape(p.Name)+"/token?done=refreshed", http.StatusSeeOther)
}

func (s *Server) postTokenGrant(w http.ResponseWriter, r *http.Request) {
	p, st, ok := s.tokenProfile(w, r)
	if !ok {
		return
	}
	if !st.CanGrant() {
		s.renderToken(w, r, http.StatusConflict, p, st, "", "This profile uses client credentials (interactive = false); it needs no grant. Use Refresh Token.")
		return
	}
	authURL, err := s.tokens.StartGrant(p.Name)
	if err != nil {
		s.renderToken(w, r, http.StatusInternalServerError, p, st, "", "Cannot start the grant: "+err.Error())
		return
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// ---- /profiles/NAME/test ----

type testPage struct {
	pageBase
	Profile *config.Profile
	Form    TestRequest
	Result  *TestResult
}

func (s *Server) testProfile(w http.ResponseWriter, r *http.Request) *config.Profile {
	name := r.PathValue("name")
	p := s.profile(name)
	if p == nil {
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no profile named %q.", name))
	}
	return p
}

func (s *Server) pageTest(w http.ResponseWriter, r *http.Request) {
	p := s.testProfile(w, r)
	if p == nil {
		return
	}
	d := testPage{pageBase: s.base(w, r, "Send Test Email · "+p.Name, "profiles"), Profile: p, Form: defaultTest(p)}
	s.render(w, http.StatusOK, "test", d)
}

func (s *Server) postTest(w http.ResponseWriter, r *http.Request) {
	p := s.testProfile(w, r)
	if p == nil {
		return
	}
	req := TestRequest{
		From:    strings.TrimSpace(r.PostFormValue("from")),
		To:      strings.TrimSpace(r.PostFormValue("to")),
		Subject: r.PostFormValue("subject"),
		Body:    r.PostFormValue("body"),
	}
	res := s.sendTest(r.Context(), p, req)
	d := testPage{pageBase: s.base(w, r, "Send Test Email · "+p.Name, "profiles"), Profile: p, Form: req, Result: &res}
	s.render(w, res.status, "test", d)
}

// ---- /queue ----

type queuePage struct {
	pageBase
	Messages []*spool.Envelope
	Enabled  bool
}

func (s *Server) pageQueue(w http.ResponseWriter, r *http.Request) {
	d := queuePage{pageBase: s.base(w, r, "Queue", "queue")}
	d.Flash = flash(r)
	if q := s.relay.Queue(); q != nil {
		d.Enabled = true
		envs, err := q.List()
		if err != nil {
			d.Error = "Cannot list the queue: " + err.Error()
		}
		d.Messages = envs
	}
	s.render(w, http.StatusOK, "queue", d)
}

func (s *Server) postQueueRetry(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("id")
	if _, err := s.retry(r.Context(), id); err != nil {
		s.queueError(w, r, err)
		return
	}
	done := "retried"
	if id == "all" {
		done = "retry-all"
	}
	http.Redirect(w, r, "/queue?done="+done, http.StatusSeeOther)
}

func (s *Server) postQueueDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.delete(r.PostFormValue("id")); err != nil {
		s.queueError(w, r, err)
		return
	}
	http.Redirect(w, r, "/queue?done=deleted", http.StatusSeeOther)
}

func (s *Server) queueError(w http.ResponseWriter, r *http.Request, err error) {
	status := queueErrStatus(err)
	d := queuePage{pageBase: s.base(w, r, "Queue", "queue")}
	d.Error = err.Error()
	if q := s.relay.Queue(); q != nil {
		d.Enabled = true
		d.Messages, _ = q.List()
	}
	s.render(w, status, "queue", d)
}

var (
	errNoQueue = errors.New("this server has no queue")
	errNoID    = errors.New("give a message ID")
)

func (s *Server) retry(ctx context.Context, id string) (int, error) {
	q := s.relay.Queue()
	if q == nil {
		return 0, errNoQueue
	}
	if id == "" {
		return 0, fmt.Errorf("%w, or all", errNoID)
	}
	n, err := q.Retry(ctx, id)
	if err != nil {
		return n, fmt.Errorf("retry %s: %w", id, err)
	}
	s.logger.Info("queue retry from the admin listener", "id", id, "messages", n)
	return n, nil
}

func (s *Server) delete(id string) error {
	q := s.relay.Queue()
	if q == nil {
		return errNoQueue
	}
	if id == "" {
		return errNoID
	}
	if err := q.Delete(id); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}
