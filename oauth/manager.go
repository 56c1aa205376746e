package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/relaymail/relay/config"
	"golang.org/x/oauth2"
)

// Options are the Manager's collaborators. The zero value works: the token
// store is DATA_DIR/tokens of the configuration.
type Options struct {
	// DataDir holds the token store in DataDir/tokens; default: the
	// configuration's server.data_dir.
	DataDir    string
	Logger     *slog.Logger
	HTTPClient *http.Client // for the token endpoint; default: 30 s timeout
	// Now is the clock for token expiry, refresh windows and status
	// times; default time.Now. Waits and retry backoff use real time.
	Now func() time.Time

	// Store replaces the file store in DataDir/tokens.
	Store Store
	// RefreshAhead renews tokens in the background when they enter their
	// refresh window, so that no message waits for a renewal and refresh
	// tokens stay in use. The server turns it on; one-shot commands
	// (relay token status) leave it off so that they send no request.
	// Without it tokens are still renewed ahead, when a caller asks for
	// one inside the window.
	RefreshAhead bool
}

// requestTimeout bounds one request to the token endpoint.
const requestTimeout = 30 * time.Second

// ErrClosed is the cause of the TokenError of a source whose Manager was
// closed or whose profile was removed.
var ErrClosed = errors.New("oauth: token source closed")

// ErrNoToken is the cause of the TokenError of a caller that gave up
// waiting before any token request failed.
var ErrNoToken = errors.New("oauth: no valid access token")

// Manager owns the token sources of a configuration's OAuth2 profiles and
// the interactive grants in progress.
type Manager struct {
	log   *slog.Logger
	now   func() time.Time
	store Store
	http  *http.Client
	ahead bool

	ctx    context.Context // canceled by Close: ends requests in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup // requests in flight

	mu      sync.Mutex
	cfg     *config.Config
	sources map[string]*TokenSource
	order   []string // profile names in configuration order
	pending map[string]*pendingGrant
	closed  bool
}

// NewManager returns a Manager for the OAuth2 profiles of cfg, with the
// tokens persisted for them. It makes no request: tokens are fetched
// when a caller asks, or in the background with Options.RefreshAhead.
func NewManager(cfg *config.Config, opts Options) (*Manager, error) {
	if cfg == nil {
		return nil, errors.New("oauth: no configuration")
	}
	m := &Manager{
		log:     opts.Logger,
		now:     opts.Now,
		store:   opts.Store,
		http:    opts.HTTPClient,
		ahead:   opts.RefreshAhead,
		sources: map[string]*TokenSource{},
		pending: map[string]*pendingGrant{},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "oauth")
	if m.now == nil {
		m.now = time.Now
	}
	if m.http == nil {
		m.http = &http.Client{Timeout: requestTimeout}
	}
	if m.store == nil {
		dir := opts.DataDir
		if dir == "" {
			dir = cfg.Server.DataDir
		}
		if dir == "" {
			return nil, errors.New("oauth: no data directory for the token store")
		}
		fs := NewFileStore(filepath.Join(dir, "tokens"))
		fs.Warn = func(msg string, args ...any) { m.log.Warn(msg, args...) }
		fs.SweepTemp()
		m.store = fs
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if err := m.Apply(cfg); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Apply takes a reloaded configuration. Sources of removed profiles close;
// new profiles get a source with their persisted tokens. A changed profile
// keeps its tokens unless the flow, client ID, token URL or scope changed
// (tokens issued for other settings are not used); any change clears its
// "needs action" state, since the change may be the fix.
func (m *Manager) Apply(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("oauth: no configuration")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	keep := map[string]bool{}
	var order []string
	for _, p := range cfg.Profiles {
		if !p.IsOAuth2() || p.Kind == config.KindMaildir {
			continue
		}
		set, skipped := newSettings(cfg, p)
		for _, k := range skipped {
			m.log.Warn("ignoring a parameter the flow sets itself", "profile", p.Name, "key", k)
		}
		keep[p.Name] = true
		order = append(order, p.Name)
		if s := m.sources[p.Name]; s != nil {
			s.update(set)
			continue
		}
		s := newTokenSource(m, set)
		s.load()
		m.sources[p.Name] = s
	}
	for name, s := range m.sources {
		if !keep[name] {
			s.close()
			delete(m.sources, name)
		}
	}
	m.cfg = cfg
	m.order = order
	return nil
}

// Source returns the token source of profile, or nil if it is not an
// OAuth2 profile.
func (m *Manager) Source(profile string) *TokenSource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sources[profile]
}

// Refresh obtains a new access token for profile now and waits for it:
// client credentials, or the refresh token (TokenSource.Refresh).
func (m *Manager) Refresh(ctx context.Context, profile string) error {
	s := m.Source(profile)
	if s == nil {
		return fmt.Errorf("profile %q is not an OAuth2 profile", profile)
	}
	return s.Refresh(ctx)
}

// Statuses returns the state of every OAuth2 profile, in configuration
// order.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	srcs := make([]*TokenSource, 0, len(m.order))
	for _, name := range m.order {
		srcs = append(srcs, m.sources[name])
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(srcs))
	for _, s := range srcs {
		out = append(out, s.Status())
	}
	return out
}

// Close stops background renewals, ends requests in flight and waits for
// them. Waiting callers get a TokenError wrapping ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, s := range m.sources {
		s.close()
	}
	m.pending = map[string]*pendingGrant{}
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// withHTTP makes x/oauth2 use the Manager's HTTP client.
func (m *Manager) withHTTP(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, m.http)
}
