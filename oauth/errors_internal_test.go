package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestClassify(t *testing.T) {
	retrieve := func(status int, code, desc string) error {
		return &oauth2.RetrieveError{Response: &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status))},
			Body: []byte("body with secrets"), ErrorCode: code, ErrorDescription: desc}
	}
	netErr := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/token", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	for _, tc := range []struct {
		name        string
		err         error
		temp, needs bool
		reason      string
	}{
		{"invalid_grant", retrieve(400, "invalid_grant", "Token has been expired or revoked."), false, true, "invalid_grant: Token has been expired or revoked."},
		{"invalid_client", retrieve(401, "invalid_client", "Unauthorized"), false, true, "invalid_client: Unauthorized"},
		{"unauthorized_client", retrieve(400, "unauthorized_client", ""), false, true, "unauthorized_client"},
		{"invalid_scope", retrieve(400, "invalid_scope", "AADSTS70011"), false, true, "invalid_scope: AADSTS70011"},
		{"unknown 4xx code", retrieve(400, "interaction_required", "x"), false, true, "interaction_required: x"},
		{"404 without JSON", retrieve(404, "", ""), false, true, "HTTP 404 Not Found"},
		{"503", retrieve(503, "", ""), true, false, "HTTP 503 Service Unavailable"},
		{"500 with code", retrieve(500, "server_error", "oops"), true, false, "server_error: oops"},
		{"429", retrieve(429, "", ""), true, false, "HTTP 429 Too Many Requests"},
		{"temporarily_unavailable on 400", retrieve(400, "temporarily_unavailable", ""), true, false, "temporarily_unavailable"},
		{"network", netErr, true, false, netErr.Error()},
		{"timeout", context.DeadlineExceeded, true, false, "context deadline exceeded"},
		{"missing access_token", errors.New("oauth2: server response missing access_token"), true, false, "oauth2: server response missing access_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := classify("p", tc.err)
			if te.Temporary != tc.temp || te.NeedsAction != tc.needs {
				t.Errorf("classify(%v) = temporary %t, needs action %t; want %t, %t", tc.err, te.Temporary, te.NeedsAction, tc.temp, tc.needs)
			}
			if te.Reason() != tc.reason {
				t.Errorf("Reason() = %q; want %q", te.Reason(), tc.reason)
			}
			if strings.Contains(te.Error(), "secrets") || strings.Contains(fmt.Sprint(te.Unwrap()), "secrets") {
				t.Errorf("the response body leaked into %q", te.Error())
			}
			if !strings.HasPrefix(te.Error(), `oauth2 token for profile "p": `) {
				t.Errorf("Error() = %q", te.Error())
			}
		})
	}
}
