package config

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
)

// Resolve reads what a parsed configuration names outside its file: the
// secrets of password_file, password_env, client_secret_file and
// client_secret_env; the server's tls_cert_file and tls_key_file; each
// profile's tls_ca_file; the OAuth2 clients' certificates, keys and
// service accounts. Users' passwords from a file or the environment are
// hashed with bcrypt unless they already are a hash.
//
// c must come from Parse (or Embedded). A returned error is an *Error
// listing every problem, each with the file and line of its key; warnings,
// such as a secret file every user may read, are added to c.Warnings.
func (c *Config) Resolve() error {
	ix := c.lines
	if ix == nil {
		ix = newLineIndex("")
	}
	l := &loader{file: c.File, ix: ix}
	if s := &c.Server; s.TLSCertFile != "" && s.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			l.addf("server.tls_cert_file", "cannot load the certificate and key: %v", err)
		} else {
			s.Certificate = &cert
		}
	}
	for i, oc := range c.OAuth2Clients {
		key := func(k string) string { return fmt.Sprintf("oauth2_clients[%d].%s", i, k) }
		if s, ok := l.readSecret(key("client_secret"), oc.ClientSecret, oc.ClientSecretFile, oc.ClientSecretEnv); ok {
			oc.ClientSecret = s
		}
		l.resolveCredentials(oc, key)
	}
	for i, p := range c.Profiles {
		key := func(k string) string { return fmt.Sprintf("profiles[%d].%s", i, k) }
		if s, ok := l.readSecret(key("password"), p.Password, p.PasswordFile, p.PasswordEnv); ok {
			p.Password = s
		}
		if p.TLSCAFile != "" {
			certs, err := readCertificateFile(p.TLSCAFile)
			if err != nil {
				l.addf(key("tls_ca_file"), "%v", err)
			}
			p.CACerts = certs
		}
	}
	for i, u := range c.Users {
		key := func(k string) string { return fmt.Sprintf("users[%d].%s", i, k) }
		if s, ok := l.readSecret(key("password"), u.PasswordHash, u.PasswordFile, u.PasswordEnv); ok {
			u.PasswordHash = l.userHash(key, u, s)
		}
	}
	c.Warnings = append(c.Warnings, l.warnings...)
	if len(l.problems) > 0 {
		return l.err()
	}
	return nil
}

// readSecret reads a secret from file or from the environment variable env;
// key is the inline key ("profiles[0].password"). It reports false when
// neither is set, or when the secret is given more than once (Parse says
// so).
func (l *loader) readSecret(key, inline, file, env string) (string, bool) {
	if countSet(inline, file, env) != 1 {
		return "", false
	}
	switch {
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			l.addf(key+"_file", "cannot read %s: %v", file, unwrapPath(err))
			return "", true
		}
		if info, err := os.Stat(file); err == nil && info.Mode().Perm()&0o004 != 0 {
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: %s_file: %s may be read by every user on this machine (mode %04o); run chmod o-r %s", l.file, l.ix.line(key+"_file"), key, file, info.Mode().Perm(), file))
		}
		s := strings.TrimRight(string(data), "\r\n")
		if s == "" {
			l.addf(key+"_file", "%s is empty", file)
		}
		return s, true
	case env != "":
		s := os.Getenv(env)
		if s == "" {
			l.addf(key+"_env", "the environment variable %s is not set or empty", env)
		}
		return s, true
	}
	return "", false
}
