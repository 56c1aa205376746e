package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
)

// TokenError is why a profile has no valid access token. It never holds a
// secret: no client secret, token, code or verifier reaches its text.
//
// For mail both kinds are temporary (the message waits in the queue, or the
// client of a direct profile gets 454 4.7.0); they differ for the operator:
//
//   - Temporary: the token endpoint was unreachable, timed out, answered
//     5xx or 429, or no token arrived within access_token_timeout. Retrying
//     later may succeed by itself.
//   - NeedsAction: the authorization server refused the client or the grant
//     (invalid_client, invalid_grant, unauthorized_client, invalid_scope,
//     ...), or an interactive profile has no refresh token. A person must
//     grant a new token or fix the configuration.
type TokenError struct {
	Profile     string
	Temporary   bool
	NeedsAction bool
	// Code and Description are the authorization server's own "error" and
	// "error_description" (RFC 6749 §5.2), when it sent them.
	Code        string
	Description string
	// HTTPStatus is the token endpoint's HTTP status, when it answered.
	HTTPStatus int
	// Err is the underlying error: an *oauth2.RetrieveError, a network
	// error, context.DeadlineExceeded, ...
	Err error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "oauth2 token for profile %q: ", e.Profile)
	b.WriteString(e.Reason())
	return b.String()
}

// Reason is the error without the profile: the server's error code and
// description ("invalid_grant: Token has been expired or revoked."), or the
// local cause.
func (e *TokenError) Reason() string {
	switch {
	case e.Code != "" && e.Description != "":
		return e.Code + ": " + e.Description
	case e.Code != "":
		return e.Code
	case e.Description != "":
		return e.Description
	case e.Err != nil:
		return e.Err.Error()
	}
	return "no valid access token"
}

func (e *TokenError) Unwrap() error { return e.Err }

// Hint is the one-line advice for the server's error, or "".
func (e *TokenError) Hint() string { return TokenHint(e.Code, e.Description) }

// needsActionCodes are the RFC 6749 §5.2 error codes that retrying cannot
// fix: the client, the grant or the configuration must change.
var needsActionCodes = map[string]bool{
	"invalid_request":           true,
	"invalid_client":            true,
	"invalid_grant":             true,
	"unauthorized_client":       true,
	"unsupported_grant_type":    true,
	"invalid_scope":             true,
	"access_denied":             true, // RFC 6749 §4.1.2.1, on the redirect
	"unsupported_response_type": true,
}

// classify turns the result of a token request into a *TokenError that
// keeps its class. Network errors, timeouts, 5xx and 429 are temporary;
// the RFC 6749 §5.2 error codes, and other 4xx answers, need action.
func classify(profile string, err error) *TokenError {
	te := &TokenError{Profile: profile, Err: err}
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re):
		code, desc := re.ErrorCode, re.ErrorDescription
		if code == "" && len(re.Body) > 0 {
			// x/oauth2/jwt leaves the RFC 6749 §5.2 body to the caller.
			var body struct {
				Code string `json:"error"`
				Desc string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				code, desc = body.Code, body.Desc
			}
		}
		te.Code = clean(code, 100)
		te.Description = clean(desc, 500)
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		te.HTTPStatus = status
		switch {
		case te.Code == "temporarily_unavailable" || te.Code == "server_error" || te.Code == "slow_down":
			te.Temporary = true
		case status >= 500 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
			te.Temporary = true
		case needsActionCodes[te.Code]:
			te.NeedsAction = true
		case status >= 400:
			te.NeedsAction = true
		default:
			// A 2xx carrying an error code, as some servers send.
			te.NeedsAction = te.Code != ""
			te.Temporary = te.Code == ""
		}
		if te.Code == "" && te.Description == "" && status != 0 {
			// The body may echo anything; name only the status.
			te.Description = "HTTP " + re.Response.Status
		}
		// The Error text of a RetrieveError holds the response body;
		// keep the class and the server's fields, not the body.
		te.Err = &httpStatusError{status: status}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		te.Temporary = true
	default:
		// Network errors, unparsable answers, a missing access_token: the
		// server or the path to it is in trouble, not the grant.
		te.Temporary = true
	}
	return te
}

type httpStatusError struct{ status int }

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("token endpoint answered HTTP %d", e.status)
}

// clean makes text from the network safe for one log line and a page:
// printable, single line, at most max bytes.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		// Cut at a byte; ToValidUTF8 drops a rune cut in half.
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return strings.TrimSpace(s)
}

// logAttrs are the error's slog attributes: the server's error code and
// description, the HTTP status, the class, and the local cause when the
// server said nothing.
func (e *TokenError) logAttrs() []any {
	var a []any
	if e.Code != "" {
		a = append(a, "error", e.Code)
	}
	if e.Description != "" {
		a = append(a, "description", e.Description)
	}
	if e.HTTPStatus != 0 {
		a = append(a, "http_status", e.HTTPStatus)
	}
	if h := e.Hint(); h != "" {
		a = append(a, "hint", h)
	}
	a = append(a, "temporary", e.Temporary, "needs_action", e.NeedsAction)
	if e.Code == "" && e.Err != nil {
		a = append(a, "error", e.Err.Error())
	}
	return a
}
