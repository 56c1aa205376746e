package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

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
			// Resolve reads and hashes password_file and password_env.
			if u.PasswordHash != "" {
				u.PasswordHash = l.userHash(key, u, u.PasswordHash)
			}
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
