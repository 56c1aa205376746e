package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
)

// Client calls a running relay's admin API; `relay queue` and `relay
// token` use it when a server runs.
type Client struct {
	// BaseURL is the admin listener, "http://127.0.0.1:8025".
	BaseURL string
	// Password is sent with HTTP basic auth when not empty.
	Password string
	HTTP     *http.Client
}

// ErrNotRunning means nothing listens on the admin address: no relay runs
// there.
var ErrNotRunning = errors.New("no relay answers on the admin listener")

// ErrUnauthorized means the server wants the admin password, or another one.
var ErrUnauthorized = errors.New("the admin listener wants the admin password (admin.password_hash)")

// NewClient makes a client for the admin listener at listen (admin.listen);
// a wildcard host is reached on loopback (config.DialAddr).
func NewClient(listen, password string) (*Client, error) {
	addr, err := config.DialAddr(listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %w", err) // admin.listen "x" is not host:port: …
	}
	return &Client{
		BaseURL:  "http://" + addr,
		Password: password,
		HTTP:     &http.Client{Timeout: 3 * time.Minute},
	}, nil
}

// StatusError is an API answer other than 2xx.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// call sends a request to path (for POST with in as its JSON body, {}
// when nil) and decodes the answer into out. A 4xx or 5xx answer whose
// body still decodes into out (a refresh that failed carries the token
// state) returns both.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if method == http.MethodPost {
		data := []byte("{}")
		if in != nil {
			var err error
			if data, err = json.Marshal(in); err != nil {
				return err
			}
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Password != "" {
		req.SetBasicAuth("admin", c.Password)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if connRefused(err) {
			return fmt.Errorf("%w (%s): %w", ErrNotRunning, c.BaseURL, err)
		}
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API %s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return ErrUnauthorized
	}
	if resp.StatusCode/100 != 2 {
		var ae APIError
		json.Unmarshal(data, &ae)
		if ae.Error == "" {
			ae.Error = string(bytes.TrimSpace(data))
		}
		if out != nil {
			json.Unmarshal(data, out)
		}
		return &StatusError{Status: resp.StatusCode, Message: ae.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API %s %s: not a relay answer: %w", method, path, err)
	}
	return nil
}

// Queue lists the queued messages.
func (c *Client) Queue(ctx context.Context) ([]*spool.Envelope, error) {
	var envs []*spool.Envelope
	return envs, c.call(ctx, http.MethodGet, "/api/queue", nil, &envs)
}

// Retry makes a queued message ("all": every one) due now and returns how
// many were.
func (c *Client) Retry(ctx context.Context, id string) (int, error) {
	var r RetryResult
	err := c.call(ctx, http.MethodPost, "/api/queue/"+url.PathEscape(id)+"/retry", nil, &r)
	return r.Retried, err
}

// Delete removes a queued message.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/api/queue/"+url.PathEscape(id)+"/delete", nil, nil)
}

// Tokens returns the token state of every OAuth2 profile.
func (c *Client) Tokens(ctx context.Context) ([]oauth.Status, error) {
	var sts []oauth.Status
	return sts, c.call(ctx, http.MethodGet, "/api/tokens", nil, &sts)
}

// Token returns the token state of one profile.
func (c *Client) Token(ctx context.Context, profile string) (oauth.Status, error) {
	var st oauth.Status
	return st, c.call(ctx, http.MethodGet, "/api/tokens/"+url.PathEscape(profile), nil, &st)
}

// Refresh obtains a new access token for profile now; the answer holds the
// token state even when it failed.
func (c *Client) Refresh(ctx context.Context, profile string) (TokenRefreshResult, error) {
	var r TokenRefreshResult
	err := c.call(ctx, http.MethodPost, "/api/tokens/"+url.PathEscape(profile)+"/refresh", nil, &r)
	return r, err
}

// StartGrant begins an interactive grant on the server and returns the
// URL to open in a browser; the redirect comes back to the server.
func (c *Client) StartGrant(ctx context.Context, profile string) (string, error) {
	var g GrantStart
	err := c.call(ctx, http.MethodPost, "/api/tokens/"+url.PathEscape(profile)+"/grant", nil, &g)
	return g.AuthURL, err
}

// StartDevice begins a device code sign-in of profile on the server.
func (c *Client) StartDevice(ctx context.Context, profile string) (oauth.DeviceGrant, error) {
	var d oauth.DeviceGrant
	err := c.call(ctx, http.MethodPost, "/api/tokens/"+url.PathEscape(profile)+"/grant", grantRequest{Method: "device"}, &d)
	return d, err
}

// CompleteGrant finishes profile's authorization code grant on the server
// with the address a browser ended on.
func (c *Client) CompleteGrant(ctx context.Context, profile, redirectURL string) (GrantComplete, error) {
	var r GrantComplete
	err := c.call(ctx, http.MethodPost, "/api/tokens/"+url.PathEscape(profile)+"/grant/complete", map[string]string{"redirect_url": redirectURL}, &r)
	return r, err
}

// Running reports whether a relay answers on the admin listener: false
// when nothing listens there; an error when something else is wrong.
func (c *Client) Running(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/healthz", nil)
	if err != nil {
		return false, err
	}
	resp, err := c.HTTP.Do(req)
	if connRefused(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("admin listener %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
		return false, fmt.Errorf("admin listener %s answers /healthz with %s: not a relay", c.BaseURL, resp.Status)
	}
	return true, nil
}
