package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

func (l *loader) validateClients(c *Config) map[string]*OAuth2Client {
	byName := map[string]*OAuth2Client{}
	for i, oc := range c.OAuth2Clients {
		key := func(k string) string { return fmt.Sprintf("oauth2_clients[%d].%s", i, k) }
		switch {
		case oc.Name == "":
			l.addf(key("name"), "every OAuth2 client needs a name")
		case byName[oc.Name] != nil:
			l.addf(key("name"), "duplicate OAuth2 client name %q (first at line %d)", oc.Name, byName[oc.Name].Line)
		default:
			byName[oc.Name] = oc
		}
		if oc.ClientID == "" && oc.ServiceAccountFile == "" {
			l.addf(key("client_id"), "the client ID from the app registration is required")
		}
		switch oc.Provider {
		case "", "google":
		case "microsoft":
			if oc.Tenant == "" {
				oc.Tenant = "common"
			}
		default:
			l.addf(key("provider"), "unknown provider %q; use \"google\", \"microsoft\" or leave it out and set auth_url and token_url", oc.Provider)
		}
		if oc.Tenant != "" && oc.Provider != "microsoft" {
			l.addf(key("tenant"), "tenant only applies to provider = \"microsoft\"")
		}
		if oc.TokenURL == "" && oc.Provider == "" {
			l.addf(key("token_url"), "the authorization server's token endpoint is required (or set provider)")
		} else if oc.TokenURL != "" {
			if err := checkURL(oc.TokenURL); err != nil {
				l.addf(key("token_url"), "%v", err)
			}
		}
		if oc.AuthURL != "" {
			if err := checkURL(oc.AuthURL); err != nil {
				l.addf(key("auth_url"), "%v", err)
			}
		}
		if oc.RedirectURL != "" {
			if err := checkURL(oc.RedirectURL); err != nil {
				l.addf(key("redirect_url"), "%v", err)
			}
		}
		l.once(key("client_secret"), oc.ClientSecret, oc.ClientSecretFile, oc.ClientSecretEnv)
		oc.inlineSecret = oc.ClientSecret != ""
		if oc.DeviceAuthURL != "" {
			if err := checkURL(oc.DeviceAuthURL); err != nil {
				l.addf(key("device_auth_url"), "%v", err)
			}
		}
		l.validateCredentials(oc, key)
	}
	return byName
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// once checks that a secret is given at most once: inline, as a file or as
// an environment variable. Resolve reads the file or the variable.
func (l *loader) once(key, inline, file, env string) bool {
	base := key[strings.LastIndex(key, ".")+1:]
	if countSet(inline, file, env) > 1 {
		l.addf(key, "give %s only once: inline, as %s_file or as %s_env", base, base, base)
		return false
	}
	return true
}

func countSet(values ...string) int {
	n := 0
	for _, s := range values {
		if s != "" {
			n++
		}
	}
	return n
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (l *loader) validateProfiles(c *Config, clients map[string]*OAuth2Client) map[string]*Profile {
	byName := map[string]*Profile{}
	if len(c.Profiles) == 0 {
		l.problems = append(l.problems, Problem{File: l.file, Key: "profiles", Msg: "no [[profiles]]: add at least one email profile"})
	}
	for i, p := range c.Profiles {
		key := func(k string) string { return fmt.Sprintf("profiles[%d].%s", i, k) }
		switch {
		case p.Name == "":
			l.addf(key("name"), "every profile needs a name")
		case strings.ContainsAny(p.Name, "/\\ \t\r\n") || strings.HasPrefix(p.Name, "."):
			l.addf(key("name"), "%q: a profile name may not contain slashes or spaces, nor start with a dot", p.Name)
		case byName[p.Name] != nil:
			l.addf(key("name"), "duplicate profile name %q (first at line %d)", p.Name, byName[p.Name].Line)
		default:
			byName[p.Name] = p
		}
		switch p.Kind {
		case KindMaildir:
			l.validateMaildir(p, key)
			continue
		case KindSMTP:
		default:
			l.addf(key("kind"), "unknown kind %q; use \"smtp\" or \"maildir\"", p.Kind)
			continue
		}
		if p.Path != "" {
			l.addf(key("path"), "path is for kind = \"maildir\" profiles only")
		}
		if p.Hostname == "" {
			l.addf(key("hostname"), "profile %q needs the hostname of its SMTP server", p.Name)
		} else if strings.ContainsAny(p.Hostname, ":/ \t") {
			l.addf(key("hostname"), "%q is not a host name; put the port in port", p.Hostname)
		}
		if p.Port < 1 || p.Port > 65535 {
			l.addf(key("port"), "%d is not a TCP port (1-65535)", p.Port)
		}
		if p.UseSSL && p.UseSTARTTLS {
			l.addf(key("use_starttls"), "use_ssl and use_starttls are both true; use_ssl is implicit TLS (usually port 465), use_starttls upgrades a plain connection (usually port 587): choose one")
		}
		if p.UseSSL && p.Port == 25 {
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: profiles[%d].port: profile %q uses implicit TLS (use_ssl) on port 25; servers offer it on 465", l.file, l.ix.line(key("port")), i, p.Name))
		}
		if p.SMTPTimeout <= 0 {
			l.addf(key("smtp_timeout"), "must be positive")
		}
		if v, err := ParseTLSVersions(p.SSLProtocols); err != nil {
			l.addf(key("ssl_protocols"), "%v", err)
		} else {
			p.TLSVersions = v
		}
		if p.HELOName != "" && (strings.ContainsAny(p.HELOName, " \t\r\n") || strings.EqualFold(p.HELOName, "localhost")) {
			l.addf(key("helo_name"), "%q: give this machine's fully qualified name; upstream servers such as Google's refuse \"localhost\"", p.HELOName)
		}
		l.validateDelivery(p, key, DeliveryQueue)
		l.once(key("password"), p.Password, p.PasswordFile, p.PasswordEnv)
		p.inlinePassword = p.Password != ""
		if p.OAuth2Client != "" {
			l.validateOAuth2Profile(p, key, clients)
			continue
		}
		l.checkOAuth2KeysUnused(p, key)
		hasPassword := p.Password != "" || p.PasswordFile != "" || p.PasswordEnv != ""
		switch {
		case p.Username != "" && !hasPassword:
			l.addf(key("password"), "profile %q has a username but no password (set password, password_file or password_env)", p.Name)
		case p.Username == "" && hasPassword:
			l.addf(key("username"), "profile %q has a password but no username", p.Name)
		}
		if p.Username != "" && !p.UseSSL && !p.UseSTARTTLS {
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: profiles[%d]: profile %q sends its password without TLS; set use_starttls or use_ssl", l.file, p.Line, i, p.Name))
		}
	}
	return byName
}

func (l *loader) validateMaildir(p *Profile, key func(string) string) {
	if p.Path == "" {
		l.addf(key("path"), "a maildir profile needs path, the Maildir directory")
	}
	if p.Hostname != "" || p.Username != "" || p.OAuth2Client != "" {
		l.addf(key("kind"), "a maildir profile delivers locally; hostname, username and oauth2_client do not apply")
	}
	// Writing into the Maildir is itself durable (fsync, rename).
	l.validateDelivery(p, key, DeliveryDirect)
}

// validateDelivery checks delivery, which defaults to def, and
// max_connections, which every kind of profile has.
func (l *loader) validateDelivery(p *Profile, key func(string) string, def string) {
	switch p.Delivery {
	case "":
		p.Delivery = def
	case DeliveryQueue, DeliveryDirect:
	default:
		l.addf(key("delivery"), "unknown delivery %q; use \"queue\" or \"direct\"", p.Delivery)
	}
	if p.MaxConnections < 1 {
		l.addf(key("max_connections"), "must be at least 1")
	}
}

func (l *loader) validateOAuth2Profile(p *Profile, key func(string) string, clients map[string]*OAuth2Client) {
	oc := clients[p.OAuth2Client]
	if oc == nil {
		l.addf(key("oauth2_client"), "no [[oauth2_clients]] entry is named %q", p.OAuth2Client)
	}
	p.Client = oc
	if p.Username == "" {
		l.addf(key("username"), "an OAuth2 profile needs username, the mailbox that XOAUTH2 authenticates as")
	}
	if p.Password != "" || p.PasswordFile != "" || p.PasswordEnv != "" {
		l.addf(key("password"), "an OAuth2 profile authenticates with tokens; remove the password")
	}
	if !p.UseSSL && !p.UseSTARTTLS {
		l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: profile %q sends its access tokens without TLS; set use_starttls or use_ssl", l.file, p.Line, p.Name))
	}
	l.validateOAuth2ProfileCredentials(p, key)
	if p.Interactive {
		if len(p.ClientCredentialsTokenParams) > 0 {
			l.addf(key("client_credentials_token_params"), "only non-interactive profiles use the client credentials grant")
		}
		if oc != nil && oc.AuthURL == "" && oc.Provider == "" {
			l.addf(key("interactive"), "interactive profiles need auth_url in OAuth2 client %q (or its provider)", oc.Name)
		}
		return
	}
	for _, k := range []struct {
		name string
		m    map[string]string
	}{
		{"authorization_request_params", p.AuthorizationRequestParams},
		{"authorization_code_token_params", p.AuthorizationCodeTokenParams},
		{"refresh_token_params", p.RefreshTokenParams},
	} {
		if len(k.m) > 0 {
			l.addf(key(k.name), "only interactive profiles use this; set interactive = true or remove it")
		}
	}
	if oc != nil && oc.Provider == "microsoft" {
		switch strings.ToLower(oc.Tenant) {
		case "common", "organizations", "consumers":
			l.addf(key("interactive"), "the client credentials flow needs your directory's tenant ID in OAuth2 client %q, not %q", oc.Name, oc.Tenant)
		}
	}
}

// checkOAuth2KeysUnused reports OAuth2 keys on a classic profile.
func (l *loader) checkOAuth2KeysUnused(p *Profile, key func(string) string) {
	unused := func(name string, set bool) {
		if set {
			l.addf(key(name), "only OAuth2 profiles (with oauth2_client) use %s", name)
		}
	}
	unused("interactive", p.Interactive)
	unused("scope", p.Scope != "")
	unused("authorization_request_params", len(p.AuthorizationRequestParams) > 0)
	unused("authorization_code_token_params", len(p.AuthorizationCodeTokenParams) > 0)
	unused("client_credentials_token_params", len(p.ClientCredentialsTokenParams) > 0)
	unused("refresh_token_params", len(p.RefreshTokenParams) > 0)
}

// Addr returns the profile's upstream host:port.
func (p *Profile) Addr() string {
	return net.JoinHostPort(p.Hostname, strconv.Itoa(p.Port))
}

// Upstream describes where the profile delivers, for status lines and
// pages: host:port with its security, or the maildir path.
func (p *Profile) Upstream() string {
	if p.Kind == KindMaildir {
		return "maildir " + p.Path
	}
	return p.Addr() + " (" + p.Security() + ")"
}

// RedirectURL returns the OAuth 2.0 redirect URI for interactive grants:
// the client's redirect_url, or the admin listener's /oauth2/callback.
func (c *Config) RedirectURL(oc *OAuth2Client) string {
	if oc != nil && oc.RedirectURL != "" {
		return oc.RedirectURL
	}
	if c.Admin.Listen == "" {
		return ""
	}
	return "http://" + c.Admin.Listen + "/oauth2/callback"
}
