// Package config reads relay's TOML configuration file: its types, the seed's
// defaults and validation with FILE:LINE errors.
//
// Parse reads only the document: it opens no file and reads no environment
// variable. Resolve, a separate step, reads what the document names outside
// itself: secrets from files and the environment, certificates and keys,
// CA files, and hashes plain user passwords; its errors name FILE:LINE too.
// Load is both, for a file on disk.
//
// Each step collects every problem before it returns, so a user fixes them
// in one pass; nothing in the file is used unless all of it is valid.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"time"
)

// Config is a whole, validated configuration file.
type Config struct {
	// File is the path the configuration was read from, or
	// EmbeddedName for the built-in default.
	File string

	Server        Server
	Queue         Queue
	Admin         Admin
	Users         []*User
	Routes        []*Route
	Profiles      []*Profile
	OAuth2Clients []*OAuth2Client

	// Warnings are problems that do not stop relay from starting, such as
	// a secret in a file that other users may read.
	Warnings []string

	// lines is the document's line index, so that Resolve names FILE:LINE.
	lines *lineIndex
}

// Server holds the [server] table: the submission listener for legacy apps.
type Server struct {
	Listen          string   `toml:"listen"`            // address of the SMTP listener
	Hostname        string   `toml:"hostname"`          // name used in the greeting
	DataDir         string   `toml:"data_dir"`          // spool and token store
	MaxMessageBytes int64    `toml:"max_message_bytes"` // larger messages get 552 5.3.4
	MaxRecipients   int      `toml:"max_recipients"`    // more recipients get 452 4.5.3
	ReadTimeout     Duration `toml:"read_timeout"`      // idle or slow clients get 421 4.4.2
	WriteTimeout    Duration `toml:"write_timeout"`
	// MaxHeaderBytes caps the header section of a message (everything
	// before the first empty line); a longer one gets 552 5.3.4.
	MaxHeaderBytes int64 `toml:"max_header_bytes"`
	// AllowUnauthenticated lists the networks that may send without AUTH;
	// their mail is routed by envelope sender.
	AllowUnauthenticated []string `toml:"allow_unauthenticated"`
	TLSCertFile          string   `toml:"tls_cert_file"` // with TLSKeyFile: offer STARTTLS
	TLSKeyFile           string   `toml:"tls_key_file"`
	// SMTPSListen is the address of the implicit-TLS listener (RFC 8314
	// "submissions", port 465 by convention), with the certificate of
	// TLSCertFile; "" (the default) turns it off.
	SMTPSListen    string `toml:"smtps_listen"`
	DefaultProfile string `toml:"default_profile"` // used when neither login nor route matches
	// MaxConnections caps simultaneous SMTP connections; beyond it new
	// clients get 421 4.7.0.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerClient caps simultaneous connections from one
	// client address.
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`

	// Networks is AllowUnauthenticated parsed.
	Networks []netip.Prefix `toml:"-"`
	// Certificate is TLSCertFile and TLSKeyFile loaded by Resolve; nil
	// without them.
	Certificate *tls.Certificate `toml:"-"`
}

// Queue holds the [queue] table: the store-and-forward retry schedule.
type Queue struct {
	MinBackoff  Duration `toml:"min_backoff"`  // first retry; doubles after each attempt
	MaxBackoff  Duration `toml:"max_backoff"`  // the delay never grows past this
	MaxLifetime Duration `toml:"max_lifetime"` // then the message bounces
}

// Admin holds the [admin] table: the pages, JSON API and metrics listener.
type Admin struct {
	Listen       string `toml:"listen"`        // "" turns the admin listener off
	PasswordHash string `toml:"password_hash"` // bcrypt; required when Listen is not loopback
}

// User is one [[users]] entry: an SMTP login for a legacy application.
type User struct {
	Name string `toml:"name"`
	// The bcrypt hash of the user's password, inline or from a file or an
	// environment variable (which may also hold the password itself).
	PasswordHash   string   `toml:"password_hash"`
	PasswordFile   string   `toml:"password_file"`
	PasswordEnv    string   `toml:"password_env"`
	Profile        string   `toml:"profile"`         // the login selects this profile
	AllowedSenders []string `toml:"allowed_senders"` // envelope senders this user may use; empty: any

	// Senders is AllowedSenders compiled.
	Senders []Pattern `toml:"-"`
	Line    int       `toml:"-"`
}

// Route is one [[routes]] entry: a profile chosen by envelope sender for
// clients that do not log in.
type Route struct {
	Sender  string `toml:"sender"` // MAIL FROM pattern, "*" matches any run of characters
	Profile string `toml:"profile"`

	// Pattern is Sender compiled.
	Pattern Pattern `toml:"-"`
	Line    int     `toml:"-"`
}

// Profile kinds.
const (
	KindSMTP    = "smtp"    // an upstream SMTP server, classic or OAuth2
	KindMaildir = "maildir" // a local Maildir, for the embedded default and dry runs
)

// Delivery modes.
const (
	DeliveryQueue  = "queue"  // durable: 250 once on disk, then retried
	DeliveryDirect = "direct" // the client waits for the upstream's answer
)

// Profile is one [[profiles]] entry, an email profile as in Ignition: a
// classic SMTP profile, an OAuth2 SMTP profile (OAuth2Client set) or a
// maildir.
type Profile struct {
	Name        string `toml:"name"`
	Description string `toml:"description"`
	Kind        string `toml:"kind"` // "smtp" (default) or "maildir"
	Path        string `toml:"path"` // maildir directory

	Hostname     string   `toml:"hostname"`
	Port         int      `toml:"port"`         // seed: default 25
	UseSSL       bool     `toml:"use_ssl"`      // implicit TLS; seed: default false
	UseSTARTTLS  bool     `toml:"use_starttls"` // seed: default false
	Username     string   `toml:"username"`     // AUTH user, or the XOAUTH2 user
	Password     string   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	PasswordEnv  string   `toml:"password_env"`
	SMTPTimeout  Duration `toml:"smtp_timeout"`  // seed: default 10,000 ms
	Debug        bool     `toml:"debug"`         // seed: default false
	SSLProtocols string   `toml:"ssl_protocols"` // seed: default "TLSv1.2"
	HELOName     string   `toml:"helo_name"`
	TLSCAFile    string   `toml:"tls_ca_file"`

	Delivery       string `toml:"delivery"`        // "queue" (default) or "direct"
	MaxConnections int    `toml:"max_connections"` // default 4

	OAuth2Client string `toml:"oauth2_client"` // makes this an OAuth2 profile
	Interactive  bool   `toml:"interactive"`   // seed: default false
	Scope        string `toml:"scope"`
	// seed: default 120 s; <= 0: fail fast without a valid token.
	AccessTokenTimeout Duration `toml:"access_token_timeout"`
	// seed: default 0; <= 0: tokens without expires_in never expire.
	DefaultAccessTokenExpiration Duration `toml:"default_access_token_expiration"`
	// seed: default 300 s; <= 0: renew exactly at expiry.
	RefreshBeforeExpiration Duration `toml:"refresh_before_expiration"`

	AuthorizationRequestParams   map[string]string `toml:"authorization_request_params"`    // interactive only
	AuthorizationCodeTokenParams map[string]string `toml:"authorization_code_token_params"` // interactive only
	ClientCredentialsTokenParams map[string]string `toml:"client_credentials_token_params"` // non-interactive only
	RefreshTokenParams           map[string]string `toml:"refresh_token_params"`            // interactive only

	// Client is the OAuth2Client named by OAuth2Client, or nil.
	Client *OAuth2Client `toml:"-"`
	// CACerts are the certificates of TLSCAFile, read by Resolve: trusted
	// for the upstream server besides the system's roots.
	CACerts []*x509.Certificate `toml:"-"`
	// TLSVersions are the TLS versions SSLProtocols allows, lowest first.
	TLSVersions []uint16 `toml:"-"`
	Line        int      `toml:"-"`

	inlinePassword bool
}

// IsOAuth2 reports whether the profile authenticates with XOAUTH2.
func (p *Profile) IsOAuth2() bool { return p.OAuth2Client != "" }

// AuthMethod describes how the profile authenticates upstream, for status
// lines and pages: "none", "password", "xoauth2 (client credentials)",
// "xoauth2 (client credentials, certificate)", "xoauth2 (service
// account)", "xoauth2 (authorization code)" or "maildir".
func (p *Profile) AuthMethod() string {
	switch {
	case p.Kind == KindMaildir:
		return "maildir"
	case p.IsOAuth2() && p.Interactive:
		return "xoauth2 (authorization code)"
	case p.IsOAuth2() && p.Client != nil && p.Client.ServiceAccountFile != "":
		return "xoauth2 (service account)"
	case p.IsOAuth2() && p.Client != nil && p.Client.ClientCertificateFile != "":
		return "xoauth2 (client credentials, certificate)"
	case p.IsOAuth2():
		return "xoauth2 (client credentials)"
	case p.Username != "":
		return "password"
	}
	return "none"
}

// Security describes the transport security to the upstream: "ssl/tls",
// "starttls" or "none".
func (p *Profile) Security() string {
	switch {
	case p.UseSSL:
		return "ssl/tls"
	case p.UseSTARTTLS:
		return "starttls"
	}
	return "none"
}

// OAuth2Client is one [[oauth2_clients]] entry, as Ignition's OAuth 2.0
// Client: one client may serve many profiles.
type OAuth2Client struct {
	Name             string `toml:"name"`
	Provider         string `toml:"provider"` // "", "google" or "microsoft": oauth.Endpoint fills the URLs left out
	Tenant           string `toml:"tenant"`   // with provider "microsoft"; default "common"
	ClientID         string `toml:"client_id"`
	ClientSecret     string `toml:"client_secret"`
	ClientSecretFile string `toml:"client_secret_file"`
	ClientSecretEnv  string `toml:"client_secret_env"`
	AuthURL          string `toml:"auth_url"`
	TokenURL         string `toml:"token_url"`
	RedirectURL      string `toml:"redirect_url"` // default: http://<admin.listen>/oauth2/callback
	// DeviceAuthURL is the device authorization endpoint (RFC 8628 §3.1)
	// for `relay token grant -device`; with provider "microsoft",
	// oauth.Endpoint derives it from tenant.
	DeviceAuthURL string `toml:"device_auth_url"`
	// ClientCertificateFile and ClientKeyFile are a PEM certificate
	// registered on the app and its RSA private key: token requests then
	// carry a signed client assertion (RFC 7523 §2.2) instead of a secret.
	ClientCertificateFile string `toml:"client_certificate_file"`
	ClientKeyFile         string `toml:"client_key_file"`
	// ServiceAccountFile is a Google service account's JSON key: profiles
	// get tokens with the JWT bearer grant (RFC 7523 §2.1), impersonating
	// their username (domain-wide delegation). provider "google" only.
	ServiceAccountFile string `toml:"service_account_file"`

	// Credentials read from the files above by Resolve.
	Certificate    *ClientCertificate `toml:"-"`
	ServiceAccount *ServiceAccount    `toml:"-"`

	Line int `toml:"-"`

	inlineSecret bool
}

// Public reports whether the client has no credential of its own (no
// secret, certificate or service account, inline or in a file): a public
// client, which never sends client_secret (RFC 6749 §2.1). It needs no
// Resolve.
func (oc *OAuth2Client) Public() bool {
	return countSet(oc.ClientSecret, oc.ClientSecretFile, oc.ClientSecretEnv, oc.ClientCertificateFile, oc.ServiceAccountFile) == 0
}

// Duration is a Go duration string in TOML ("10s", "2m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as Go does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalTOML accepts only duration strings: a bare number would leave
// the unit to guesswork (the seed speaks of milliseconds and seconds).
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return errDurationType{v}
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return errDurationSyntax{s}
	}
	*d = Duration(parsed)
	return nil
}

// MarshalText formats d for TOML and JSON.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
