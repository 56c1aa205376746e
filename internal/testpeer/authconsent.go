package testpeer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"

	"github.com/ory/fosite"
)

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><title>Authorize {{.Client}}</title></head>
<body>
<h1>{{.Client}} wants access</h1>
<p>Signed in as {{.Subject}}. Scopes: {{range .Scopes}}{{.}} {{end}}</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="consent_csrf" value="{{.CSRF}}">
<button name="decision" value="approve">Allow</button>
<button name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

const consentCookie = "consent_csrf"

// authorize is the authorization endpoint: GET shows the consent page (the
// user is signed in already) with a CSRF token bound to a cookie; POST
// carries the decision and redirects to the client.
func (a *AuthServer) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := a.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		a.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	for k, want := range a.opts.RequireAuthParams {
		if got := r.Form.Get(k); got != want {
			a.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHintf("The request must carry %s=%s.", k, want))
			return
		}
	}
	switch r.Method {
	case http.MethodGet:
		a.mu.Lock()
		a.authReqs = append(a.authReqs, r.URL.Query())
		a.mu.Unlock()
		csrf := rand.Text()
		http.SetCookie(w, &http.Cookie{Name: consentCookie, Value: csrf, Path: "/authorize", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		consentPage.Execute(w, map[string]any{
			"Client":  ar.GetClient().GetID(),
			"Subject": a.opts.Subject,
			"Scopes":  ar.GetRequestedScopes(),
			"Action":  "/authorize?" + r.URL.RawQuery,
			"CSRF":    csrf,
		})
		return
	case http.MethodPost:
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c, err := r.Cookie(consentCookie)
	if err != nil || c.Value == "" || c.Value != r.PostForm.Get("consent_csrf") {
		http.Error(w, "consent form expired or forged", http.StatusForbidden)
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		a.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The resource owner denied the request."))
		return
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	resp, err := a.provider.NewAuthorizeResponse(ctx, ar, &fosite.DefaultSession{Subject: a.opts.Subject, Username: a.opts.Subject})
	if err != nil {
		a.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	a.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func (a *AuthServer) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := a.provider.NewIntrospectionRequest(ctx, r, &fosite.DefaultSession{})
	if err != nil {
		a.provider.WriteIntrospectionError(ctx, w, err)
		return
	}
	a.provider.WriteIntrospectionResponse(ctx, w, ir)
}

func (a *AuthServer) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a.provider.WriteRevocationResponse(ctx, w, a.provider.NewRevocationRequest(ctx, r))
}

// AuthConsent completes the consent step as a browser would: it fetches
// authURL, then posts the consent form with approve or deny, following
// redirects, and returns the last response (the redirect URI's answer).
// client must have a cookie jar.
func (a *AuthServer) AuthConsent(ctx context.Context, client *http.Client, authURL string, approve bool) (*http.Response, error) {
	if client.Jar == nil {
		return nil, errors.New("the consent form needs a client with a cookie jar")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	page, err := readBody(resp)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET authorization URL: %s: %s", resp.Status, page)
	}
	action, csrf := formField(page, `action="`), formField(page, `name="consent_csrf" value="`)
	if action == "" || csrf == "" {
		return nil, fmt.Errorf("no consent form in %q", page)
	}
	target, err := resp.Request.URL.Parse(action)
	if err != nil {
		return nil, err
	}
	decision := "deny"
	if approve {
		decision = "approve"
	}
	body := url.Values{"consent_csrf": {csrf}, "decision": {decision}}
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), stringsReader(body.Encode()))
	if err != nil {
		return nil, err
	}
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return client.Do(post)
}
