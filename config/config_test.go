package config_test

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/config"
)

// goodDir and badDir hold the configurations the table tests load; go test
// runs in the package directory.
const (
	goodDir = "../testdata/config/good"
	badDir  = "../testdata/config/bad"
)

// check compares one decoded value and reports it as Load(file).
type check struct {
	t    *testing.T
	file string
}

func (c check) eq(what string, got, want any) {
	c.t.Helper()
	if !reflect.DeepEqual(got, want) {
		c.t.Errorf("Load(%q): %s = %#v; want %#v", c.file, what, got, want)
	}
}

// profile returns the profile named name or stops the test.
func (c check) profile(cfg *config.Config, name string) *config.Profile {
	c.t.Helper()
	p := cfg.Profile(name)
	if p == nil {
		c.t.Fatalf("Load(%q): no profile %q; want one", c.file, name)
	}
	return p
}

func sec(n int) config.Duration { return config.Duration(time.Duration(n) * time.Second) }

// seedDefaults checks the values a profile of kind smtp has when the file
// does not set them (the seed's defaults), except those named in set.
func (c check) seedDefaults(p *config.Profile, set ...string) {
	c.t.Helper()
	skip := map[string]bool{}
	for _, s := range set {
		skip[s] = true
	}
	defaults := []struct {
		key       string
		got, want any
	}{
		{"kind", p.Kind, config.KindSMTP},
		{"port", p.Port, 25},
		{"use_ssl", p.UseSSL, false},
		{"use_starttls", p.UseSTARTTLS, false},
		{"smtp_timeout", p.SMTPTimeout, sec(10)},
		{"debug", p.Debug, false},
		{"ssl_protocols", p.TLSVersions, []uint16{tls.VersionTLS12}},
		{"interactive", p.Interactive, false},
		{"access_token_timeout", p.AccessTokenTimeout, sec(120)},
		{"default_access_token_expiration", p.DefaultAccessTokenExpiration, config.Duration(0)},
		{"refresh_before_expiration", p.RefreshBeforeExpiration, sec(300)},
		{"delivery", p.Delivery, config.DeliveryQueue},
		{"max_connections", p.MaxConnections, 4},
	}
	for _, d := range defaults {
		if !skip[d.key] {
			c.eq(fmt.Sprintf("profile %q %s (default)", p.Name, d.key), d.got, d.want)
		}
	}
}

func TestLoadGood(t *testing.T) {
	tests := []struct {
		file  string
		env   map[string]string
		check func(c check, cfg *config.Config)
	}{
		{
			file: "classic.toml",
			check: func(c check, cfg *config.Config) {
				c.eq("Server.Listen", cfg.Server.Listen, "0.0.0.0:2525")
				c.eq("Server.Hostname", cfg.Server.Hostname, "relay.plant.example.com")
				c.eq("Server.DefaultProfile", cfg.Server.DefaultProfile, "mailhost")
				c.eq("Server.Networks", cfg.Server.Networks, []netip.Prefix{
					netip.MustParsePrefix("10.1.0.0/16"),
					netip.MustParsePrefix("192.168.10.7/32"),
				})
				// [server] keys the file leaves out keep their defaults.
				c.eq("Server.DataDir", cfg.Server.DataDir, "./relay-data")
				c.eq("Server.MaxMessageBytes", cfg.Server.MaxMessageBytes, int64(26214400))
				c.eq("Server.MaxRecipients", cfg.Server.MaxRecipients, 100)
				c.eq("Server.ReadTimeout", cfg.Server.ReadTimeout, sec(60))
				c.eq("Server.WriteTimeout", cfg.Server.WriteTimeout, sec(60))
				// No [queue] or [admin]: Postfix's schedule, loopback admin.
				c.eq("Queue", cfg.Queue, config.Queue{
					MinBackoff:  config.Duration(5 * time.Minute),
					MaxBackoff:  config.Duration(time.Hour),
					MaxLifetime: config.Duration(120 * time.Hour),
				})
				c.eq("Admin.Listen", cfg.Admin.Listen, "127.0.0.1:8025")

				c.eq("len(Users)", len(cfg.Users), 2)
				if len(cfg.Users) == 2 {
					u := cfg.Users[0]
					c.eq("Users[0].Name", u.Name, "scada")
					c.eq("Users[0].Profile", u.Profile, "mailhost")
					c.eq("Users[0].PasswordHash", u.PasswordHash, "$2a$04$yjf7D3Hr3OAFkYXU.sYIUe8x.CiKPyIovlXZRmT8q2fDVq36BCIP6")
					c.eq("len(Users[0].Senders)", len(u.Senders), 2)
					for _, addr := range []string{"alarms@plant.example.com", "pump7@plant.example.com"} {
						if !matchesAny(u.Senders, addr) {
							c.t.Errorf("Load(%q): user scada may not send as %q; want allowed", c.file, addr)
						}
					}
					if matchesAny(u.Senders, "alarms@example.com") {
						c.t.Errorf("Load(%q): user scada may send as alarms@example.com; want refused", c.file)
					}
					c.eq("Users[0].Line", u.Line, 10)
					c.eq("Users[1].Name", cfg.Users[1].Name, "printer")
					c.eq("len(Users[1].Senders)", len(cfg.Users[1].Senders), 0)
					c.eq("Users[1].Line", cfg.Users[1].Line, 16)
				}

				c.eq("len(Routes)", len(cfg.Routes), 1)
				if len(cfg.Routes) == 1 {
					r := cfg.Routes[0]
					c.eq("Routes[0].Profile", r.Profile, "mailhost")
					c.eq("Routes[0].Pattern.String()", r.Pattern.String(), "*@reports.example.com")
					c.eq("Routes[0] matches daily@reports.example.com", r.Pattern.Match("daily@reports.example.com"), true)
					c.eq("Routes[0].Line", r.Line, 21)
				}

				c.eq("len(Profiles)", len(cfg.Profiles), 1)
				p := c.profile(cfg, "mailhost")
				c.eq("Description", p.Description, "On-site Exchange")
				c.eq("Hostname", p.Hostname, "mail.example.com")
				c.eq("Port", p.Port, 587)
				c.eq("UseSTARTTLS", p.UseSTARTTLS, true)
				c.eq("Username", p.Username, "relay@example.com")
				c.eq("Password", p.Password, "correct horse battery staple")
				c.eq("HELOName", p.HELOName, "relay.plant.example.com")
				c.eq("TLSVersions", p.TLSVersions, []uint16{tls.VersionTLS12, tls.VersionTLS13})
				c.eq("IsOAuth2()", p.IsOAuth2(), false)
				c.eq("AuthMethod()", p.AuthMethod(), "password")
				c.eq("Security()", p.Security(), "starttls")
				c.eq("Addr()", p.Addr(), "mail.example.com:587")
				c.eq("Client", p.Client, (*config.OAuth2Client)(nil))
				c.eq("Line", p.Line, 25)
				c.seedDefaults(p, "port", "use_starttls", "ssl_protocols")
			},
		},
		{
			file: "microsoft.toml",
			check: func(c check, cfg *config.Config) {
				oc := cfg.OAuth2ClientNamed("entra")
				if oc == nil {
					c.t.Fatalf("Load(%q): no OAuth2 client entra; want one", c.file)
				}
				c.eq("ClientID", oc.ClientID, "00000000-1111-2222-3333-444444444444")
				c.eq("ClientSecret", oc.ClientSecret, "not-a-real-secret")

				p := c.profile(cfg, "office365")
				c.eq("Client", p.Client, oc)
				c.eq("IsOAuth2()", p.IsOAuth2(), true)
				c.eq("AuthMethod()", p.AuthMethod(), "xoauth2 (client credentials)")
				c.eq("Username", p.Username, "alarms@contoso.com")
				c.eq("Scope", p.Scope, "https://outlook.office365.com/.default")
				c.eq("AccessTokenTimeout", p.AccessTokenTimeout, config.Duration(0))
				c.eq("Delivery", p.Delivery, config.DeliveryDirect)
				c.eq("MaxConnections", p.MaxConnections, 2)
				c.eq("ClientCredentialsTokenParams", p.ClientCredentialsTokenParams,
					map[string]string{"resource": "https://outlook.office365.com"})
				c.seedDefaults(p, "port", "use_starttls", "access_token_timeout", "delivery", "max_connections")
			},
		},
		{
			file: "google.toml",
			env:  map[string]string{"RELAY_TEST_GOOGLE_SECRET": "google-secret"},
			check: func(c check, cfg *config.Config) {
				c.eq("Admin.Listen", cfg.Admin.Listen, "127.0.0.1:8026")
				oc := cfg.OAuth2ClientNamed("google")
				if oc == nil {
					c.t.Fatalf("Load(%q): no OAuth2 client google; want one", c.file)
				}
				c.eq("ClientSecret", oc.ClientSecret, "google-secret")
				c.eq("RedirectURL(google)", cfg.RedirectURL(oc), "http://127.0.0.1:8026/oauth2/callback")

				p := c.profile(cfg, "gmail")
				c.eq("Client", p.Client, oc)
				c.eq("Interactive", p.Interactive, true)
				c.eq("AuthMethod()", p.AuthMethod(), "xoauth2 (authorization code)")
				c.eq("Security()", p.Security(), "ssl/tls")
				c.eq("Port", p.Port, 465)
				c.eq("DefaultAccessTokenExpiration", p.DefaultAccessTokenExpiration, config.Duration(time.Hour))
				c.eq("RefreshBeforeExpiration", p.RefreshBeforeExpiration, config.Duration(time.Minute))
				c.eq("AuthorizationRequestParams", p.AuthorizationRequestParams,
					map[string]string{"access_type": "offline", "prompt": "consent"})
				c.seedDefaults(p, "port", "use_ssl", "interactive", "default_access_token_expiration", "refresh_before_expiration")
			},
		},
		{
			file: "headless.toml",
			check: func(c check, cfg *config.Config) {
				cert := cfg.OAuth2ClientNamed("entra-cert")
				if cert == nil || cert.Certificate == nil || cert.Certificate.Key == nil || len(cert.Certificate.Chain) != 1 {
					c.t.Fatalf("Load(%q): entra-cert has no certificate and key: %+v", c.file, cert)
				}
				c.eq("entra-cert Public()", cert.Public(), false)
				sa := cfg.OAuth2ClientNamed("workspace")
				if sa == nil || sa.ServiceAccount == nil {
					c.t.Fatalf("Load(%q): workspace has no service account", c.file)
				}
				c.eq("workspace ServiceAccount.ClientEmail", sa.ServiceAccount.ClientEmail, "relay@relay-test.iam.gserviceaccount.com")
				c.eq("workspace ClientID", sa.ClientID, "104000000000000000001")
				pub := cfg.OAuth2ClientNamed("entra-public")
				c.eq("entra-public Public()", pub.Public(), true)
				c.eq("mailbox Interactive", c.profile(cfg, "mailbox").Interactive, true)
				c.eq("gmail Client", c.profile(cfg, "gmail").Client, sa)
				c.eq("gmail AuthMethod()", c.profile(cfg, "gmail").AuthMethod(), "xoauth2 (service account)")
				c.eq("office365 AuthMethod()", c.profile(cfg, "office365").AuthMethod(), "xoauth2 (client credentials, certificate)")
			},
		},
		{
			file: "maildir.toml",
			check: func(c check, cfg *config.Config) {
				c.eq("Server.Listen", cfg.Server.Listen, "127.0.0.1:2526")
				c.eq("Queue", cfg.Queue, config.Queue{
					MinBackoff:  config.Duration(time.Minute),
					MaxBackoff:  config.Duration(10 * time.Minute),
					MaxLifetime: config.Duration(24 * time.Hour),
				})
				c.eq("Admin.Listen", cfg.Admin.Listen, "")
				p := c.profile(cfg, "dryrun")
				c.eq("Kind", p.Kind, config.KindMaildir)
				c.eq("Path", p.Path, "/var/spool/relay/dryrun")
				c.eq("Delivery", p.Delivery, config.DeliveryDirect)
				c.eq("MaxConnections", p.MaxConnections, 4)
				c.eq("AuthMethod()", p.AuthMethod(), "maildir")
				c.eq("Upstream()", p.Upstream(), "maildir /var/spool/relay/dryrun")
			},
		},
		{
			file: "secrets.toml",
			env:  map[string]string{"RELAY_TEST_BACKUP_PASSWORD": "backup-secret"},
			check: func(c check, cfg *config.Config) {
				p := c.profile(cfg, "smarthost")
				c.eq("smarthost Password", p.Password, "smarthost-secret")
				c.eq("smarthost Security()", p.Security(), "ssl/tls")
				c.seedDefaults(p, "port", "use_ssl")

				b := c.profile(cfg, "backup")
				c.eq("backup Password", b.Password, "backup-secret")
				c.eq("backup TLSVersions", b.TLSVersions, []uint16{tls.VersionTLS13})
				c.eq("backup Debug", b.Debug, true)
				c.eq("backup SMTPTimeout", b.SMTPTimeout, sec(30))
				c.seedDefaults(b, "use_starttls", "ssl_protocols", "debug", "smtp_timeout")

				// A password_file of a user may hold the password itself;
				// relay keeps only its bcrypt hash.
				if len(cfg.Users) != 1 {
					c.t.Fatalf("Load(%q): %d users; want 1", c.file, len(cfg.Users))
				}
				if err := bcrypt.CompareHashAndPassword([]byte(cfg.Users[0].PasswordHash), []byte("erp-secret")); err != nil {
					c.t.Errorf("Load(%q): user erp's PasswordHash %q does not match the password in its file: %v", c.file, cfg.Users[0].PasswordHash, err)
				}
			},
		},
	}
	files, _ := filepath.Glob(filepath.Join(goodDir, "*.toml"))
	tested := map[string]bool{}
	for _, tt := range tests {
		tested[tt.file] = true
	}
	for _, f := range files {
		if !tested[filepath.Base(f)] {
			t.Errorf("%s has no case in TestLoadGood", f)
		}
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := filepath.Join(goodDir, tt.file)
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("Load(%q) = %v; want no error", path, err)
			}
			if cfg.File != path {
				t.Errorf("Load(%q).File = %q; want %q", path, cfg.File, path)
			}
			tt.check(check{t, path}, cfg)
		})
	}
}

func matchesAny(pats []config.Pattern, addr string) bool {
	for _, p := range pats {
		if p.Match(addr) {
			return true
		}
	}
	return false
}
