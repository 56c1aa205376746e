package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func defaultServer() Server {
	return Server{
		Listen:               "127.0.0.1:2525",
		Hostname:             "localhost",
		DataDir:              "./relay-data",
		MaxMessageBytes:      26214400, // 25 MiB, Office 365's and Gmail's own limit
		MaxRecipients:        100,
		MaxHeaderBytes:       1 << 20, // 1 MiB, Exim's header_maxsize
		ReadTimeout:          Duration(60 * time.Second),
		WriteTimeout:         Duration(60 * time.Second),
		AllowUnauthenticated: []string{"127.0.0.0/8", "::1/128"},
		// On a relay for legacy applications most clients share one
		// address (127.0.0.1), so the per-client cap is generous; Postfix
		// exempts its own networks from its cap of 50 altogether.
		MaxConnections:          200,
		MaxConnectionsPerClient: 100,
	}
}

func defaultQueue() Queue {
	// Postfix's schedule: minimal_backoff_time 300s, maximal_backoff_time
	// 3600s; bounce_queue_lifetime 5d.
	return Queue{
		MinBackoff:  Duration(5 * time.Minute),
		MaxBackoff:  Duration(time.Hour),
		MaxLifetime: Duration(120 * time.Hour),
	}
}

func defaultAdmin() Admin {
	return Admin{Listen: "127.0.0.1:8025"}
}

func defaultProfile() *Profile {
	return &Profile{
		Kind:                    KindSMTP,
		Port:                    25,                          // seed: default 25
		SMTPTimeout:             Duration(10 * time.Second),  // seed: default 10,000 ms
		SSLProtocols:            "TLSv1.2",                   // seed: default TLSv1.2
		MaxConnections:          4,                           // Office 365 allows 3-4 concurrent connections per mailbox
		AccessTokenTimeout:      Duration(120 * time.Second), // seed: default 120 s
		RefreshBeforeExpiration: Duration(300 * time.Second), // seed: default 300 s
	}
}

// tlsVersions are the names ssl_protocols accepts, as the seed writes them.
var tlsVersions = map[string]uint16{
	"tlsv1":   tls.VersionTLS10,
	"tlsv1.0": tls.VersionTLS10,
	"tlsv1.1": tls.VersionTLS11,
	"tlsv1.2": tls.VersionTLS12,
	"tlsv1.3": tls.VersionTLS13,
}

// TLSVersionName names a TLS version as ssl_protocols does.
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// ParseTLSVersions parses a comma-separated ssl_protocols list.
func ParseTLSVersions(s string) ([]uint16, error) {
	seen := map[uint16]bool{}
	var out []uint16
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		v, ok := tlsVersions[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("unknown TLS version %q; use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3", name)
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no TLS version given; use for example \"TLSv1.2,TLSv1.3\"")
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (l *loader) validate(c *Config) {
	l.validateServer(c)
	l.validateQueue(c)
	l.validateAdmin(c)
	clients := l.validateClients(c)
	profiles := l.validateProfiles(c, clients)
	l.validateUsers(c, profiles)
	l.validateRoutes(c, profiles)
	if c.Server.DefaultProfile != "" && profiles[c.Server.DefaultProfile] == nil {
		l.addf("server.default_profile", "no profile is named %q", c.Server.DefaultProfile)
	}
	for i, p := range c.Profiles {
		if p.IsOAuth2() && p.Interactive && p.Client != nil && c.RedirectURL(p.Client) == "" {
			l.addf(fmt.Sprintf("profiles[%d].interactive", i), "interactive profiles receive the authorization redirect on the admin listener: set admin.listen, or redirect_url in OAuth2 client %q", p.Client.Name)
		}
	}
}

func (l *loader) validateServer(c *Config) {
	s := &c.Server
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		l.addf("server.listen", "%q is not host:port: %v", s.Listen, addrErr(err))
	}
	if s.Hostname == "" || strings.ContainsAny(s.Hostname, " \t\r\n") {
		l.addf("server.hostname", "must be a host name without spaces")
	}
	if s.DataDir == "" {
		l.addf("server.data_dir", "must not be empty")
	}
	if s.MaxMessageBytes <= 0 {
		l.addf("server.max_message_bytes", "must be positive")
	}
	if s.MaxRecipients <= 0 {
		l.addf("server.max_recipients", "must be positive")
	}
	if s.MaxHeaderBytes <= 0 {
		l.addf("server.max_header_bytes", "must be positive")
	}
	if s.ReadTimeout <= 0 {
		l.addf("server.read_timeout", "must be positive")
	}
	if s.WriteTimeout <= 0 {
		l.addf("server.write_timeout", "must be positive")
	}
	if s.MaxConnections <= 0 {
		l.addf("server.max_connections", "must be positive")
	}
	if s.MaxConnectionsPerClient <= 0 {
		l.addf("server.max_connections_per_client", "must be positive")
	}
	for _, n := range s.AllowUnauthenticated {
		p, err := parseNetwork(n)
		if err != nil {
			l.addf("server.allow_unauthenticated", "%v", err)
			continue
		}
		s.Networks = append(s.Networks, p)
	}
	if s.SMTPSListen != "" {
		if _, _, err := net.SplitHostPort(s.SMTPSListen); err != nil {
			l.addf("server.smtps_listen", "%q is not host:port: %v", s.SMTPSListen, addrErr(err))
		} else if s.TLSCertFile == "" || s.TLSKeyFile == "" {
			l.addf("server.smtps_listen", "implicit TLS needs a certificate: set tls_cert_file and tls_key_file")
		}
	}
	switch {
	case s.TLSCertFile != "" && s.TLSKeyFile == "":
		l.addf("server.tls_cert_file", "tls_cert_file and tls_key_file go together; set both or neither")
	case s.TLSCertFile == "" && s.TLSKeyFile != "":
		l.addf("server.tls_key_file", "tls_cert_file and tls_key_file go together; set both or neither")
	case s.TLSCertFile != "":
		if _, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile); err != nil {
			l.addf("server.tls_cert_file", "cannot load the certificate and key: %v", err)
		}
	}
}

// parseNetwork accepts a CIDR prefix or a single address.
func parseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is neither a network such as \"192.168.10.0/24\" nor an address", s)
}

func addrErr(err error) string {
	if ae, ok := err.(*net.AddrError); ok {
		return ae.Err
	}
	return err.Error()
}

func (l *loader) validateQueue(c *Config) {
	q := c.Queue
	if q.MinBackoff <= 0 {
		l.addf("queue.min_backoff", "must be positive")
	}
	if q.MaxBackoff < q.MinBackoff {
		l.addf("queue.max_backoff", "must not be less than min_backoff (%s)", q.MinBackoff)
	}
	if q.MaxLifetime <= 0 {
		l.addf("queue.max_lifetime", "must be positive")
	}
}

func (l *loader) validateAdmin(c *Config) {
	a := c.Admin
	if a.Listen == "" {
		return
	}
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		l.addf("admin.listen", "%q is not host:port: %v", a.Listen, addrErr(err))
		return
	}
	if a.PasswordHash != "" {
		if _, err := bcrypt.Cost([]byte(a.PasswordHash)); err != nil {
			l.addf("admin.password_hash", "not a bcrypt hash; make one with `relay hash-password`")
		}
	} else if !IsLoopbackHost(host) {
		l.addf("admin.listen", "%q is reachable from other machines: set admin.password_hash (make one with `relay hash-password`), or listen on 127.0.0.1", a.Listen)
	}
}

// IsLoopbackHost reports whether host (from host:port) can only be reached
// from this machine.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

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
		case "":
		case "google":
			if oc.AuthURL == "" {
				oc.AuthURL = "https://accounts.google.com/o/oauth2/v2/auth"
			}
			if oc.TokenURL == "" {
				oc.TokenURL = "https://oauth2.googleapis.com/token"
			}
		case "microsoft":
			if oc.Tenant == "" {
				oc.Tenant = "common"
			}
			base := "https://login.microsoftonline.com/" + url.PathEscape(oc.Tenant) + "/oauth2/v2.0/"
			if oc.AuthURL == "" {
				oc.AuthURL = base + "authorize"
			}
			if oc.TokenURL == "" {
				oc.TokenURL = base + "token"
			}
		default:
			l.addf(key("provider"), "unknown provider %q; use \"google\", \"microsoft\" or leave it out and set auth_url and token_url", oc.Provider)
		}
		if oc.Tenant != "" && oc.Provider != "microsoft" {
			l.addf(key("tenant"), "tenant only applies to provider = \"microsoft\"")
		}
		if oc.TokenURL == "" {
			l.addf(key("token_url"), "the authorization server's token endpoint is required (or set provider)")
		} else if err := checkURL(oc.TokenURL); err != nil {
			l.addf(key("token_url"), "%v", err)
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
		secret, inline := l.secret(key("client_secret"), oc.ClientSecret, oc.ClientSecretFile, oc.ClientSecretEnv)
		oc.ClientSecret, oc.inlineSecret = secret, inline
		l.deviceAuthURL(oc, key)
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

// secret resolves a secret given inline, as a file or as an environment
// variable; at most one of them may be set. It reports whether the secret
// was inline.
func (l *loader) secret(key, inline, file, env string) (string, bool) {
	base := key[strings.LastIndex(key, ".")+1:]
	if countSet(inline, file, env) > 1 {
		l.addf(key, "give %s only once: inline, as %s_file or as %s_env", base, base, base)
		return "", false
	}
	switch {
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			l.addf(key+"_file", "cannot read %s: %v", file, unwrapPath(err))
			return "", false
		}
		if info, err := os.Stat(file); err == nil && info.Mode().Perm()&0o004 != 0 {
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: %s_file: %s may be read by every user on this machine (mode %04o); run chmod o-r %s", l.file, l.ix.line(key+"_file"), key, file, info.Mode().Perm(), file))
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			l.addf(key+"_file", "%s is empty", file)
		}
		return s, false
	case env != "":
		s := os.Getenv(env)
		if s == "" {
			l.addf(key+"_env", "the environment variable %s is not set or empty", env)
		}
		return s, false
	}
	return inline, inline != ""
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
		if p.TLSCAFile != "" {
			if _, err := os.ReadFile(p.TLSCAFile); err != nil {
				l.addf(key("tls_ca_file"), "cannot read %s: %v", p.TLSCAFile, unwrapPath(err))
			}
		}
		switch p.Delivery {
		case "":
			p.Delivery = DeliveryQueue
		case DeliveryQueue, DeliveryDirect:
		default:
			l.addf(key("delivery"), "unknown delivery %q; use \"queue\" or \"direct\"", p.Delivery)
		}
		if p.MaxConnections < 1 {
			l.addf(key("max_connections"), "must be at least 1")
		}
		password, inline := l.secret(key("password"), p.Password, p.PasswordFile, p.PasswordEnv)
		p.Password, p.inlinePassword = password, inline
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
	switch p.Delivery {
	case "":
		// Writing into the Maildir is itself durable (fsync, rename).
		p.Delivery = DeliveryDirect
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
		if oc != nil && oc.AuthURL == "" {
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

func (l *loader) validateUsers(c *Config, profiles map[string]*Profile) {
	byName := map[string]*User{}
	for i, u := range c.Users {
		key := func(k string) string { return fmt.Sprintf("users[%d].%s", i, k) }
		switch {
		case u.Name == "":
			l.addf(key("name"), "every user needs a name, the SMTP login")
		case byName[u.Name] != nil:
			l.addf(key("name"), "duplicate user name %q (first at line %d)", u.Name, byName[u.Name].Line)
		default:
			byName[u.Name] = u
		}
		if u.Profile == "" {
			l.addf(key("profile"), "user %q needs the profile its mail goes through", u.Name)
		} else if profiles[u.Profile] == nil {
			l.addf(key("profile"), "no profile is named %q", u.Profile)
		}
		switch countSet(u.PasswordHash, u.PasswordFile, u.PasswordEnv) {
		case 0:
			l.addf(key("password_hash"), "user %q needs password_hash (make one with `relay hash-password`), password_file or password_env", u.Name)
		case 1:
			s, _ := l.secret(key("password"), "", u.PasswordFile, u.PasswordEnv)
			if u.PasswordHash != "" {
				s = u.PasswordHash
			}
			u.PasswordHash = l.userHash(key, u, s)
		default:
			l.addf(key("password_hash"), "give the password only once: password_hash, password_file or password_env")
		}
		for _, s := range u.AllowedSenders {
			pat, err := ParsePattern(s)
			if err != nil {
				l.addf(key("allowed_senders"), "%q: %v", s, err)
				continue
			}
			u.Senders = append(u.Senders, pat)
		}
	}
}

// userHash returns the bcrypt hash of a user's password. password_file and
// password_env may hold a hash or the password itself, which is hashed here.
func (l *loader) userHash(key func(string) string, u *User, s string) string {
	if s == "" {
		return ""
	}
	// The key the password came from.
	k := "password_hash"
	if u.PasswordFile != "" {
		k = "password_file"
	} else if u.PasswordEnv != "" {
		k = "password_env"
	}
	if strings.HasPrefix(s, "$2") {
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			l.addf(key(k), "user %q: not a valid bcrypt hash; make one with `relay hash-password`", u.Name)
			return ""
		}
		return s
	}
	if u.PasswordHash != "" {
		l.addf(key("password_hash"), "user %q: not a bcrypt hash; make one with `relay hash-password`", u.Name)
		return ""
	}
	if len(s) > 72 {
		l.addf(key(k), "user %q: a password may have at most 72 bytes", u.Name)
		return ""
	}
	h, err := bcrypt.GenerateFromPassword([]byte(s), bcrypt.DefaultCost)
	if err != nil {
		l.addf(key(k), "user %q: %v", u.Name, err)
		return ""
	}
	return string(h)
}

func (l *loader) validateRoutes(c *Config, profiles map[string]*Profile) {
	for i, r := range c.Routes {
		key := func(k string) string { return fmt.Sprintf("routes[%d].%s", i, k) }
		pat, err := ParsePattern(r.Sender)
		if err != nil {
			l.addf(key("sender"), "%v", err)
		}
		r.Pattern = pat
		if r.Profile == "" {
			l.addf(key("profile"), "a route needs the profile its mail goes through")
		} else if profiles[r.Profile] == nil {
			l.addf(key("profile"), "no profile is named %q", r.Profile)
		}
	}
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
