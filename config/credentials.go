package config

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"time"
)

// ClientCertificate is an OAuth2 client's certificate credential: the
// certificate registered on the app registration and its private key.
type ClientCertificate struct {
	// Chain is the certificate and any intermediates, DER, leaf first.
	Chain [][]byte
	Key   *rsa.PrivateKey
	// NotAfter is the leaf's expiry.
	NotAfter time.Time
}

// ServiceAccount is a Google service account key file.
type ServiceAccount struct {
	// JSON is the key file as Google gave it; golang.org/x/oauth2/google
	// reads it.
	JSON         []byte
	ClientEmail  string // the assertion's iss
	ClientID     string
	PrivateKeyID string // the assertion's kid
	TokenURI     string // where Google wants the assertion sent
}

// readCertificateFile reads the PEM certificates of path, leaf first.
func readCertificateFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path)
	}
	return certs, nil
}

// readKeyFile reads the PEM RSA private key of path (PKCS #1 or #8, not
// encrypted): Entra signs client assertions with RS256.
func readKeyFile(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s holds no PEM private key (-----BEGIN PRIVATE KEY-----)", path)
		}
		switch b.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%s: a %T key; client assertions need an RSA key", path, k)
			}
			return rk, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%s is encrypted; store it without a passphrase (openssl pkey -in KEY -out %s) and chmod 600 it", path, path)
		}
	}
}

// readServiceAccountFile reads a Google service account's JSON key file.
func readServiceAccountFile(path string) (*ServiceAccount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	var f struct {
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		ClientID     string `json:"client_id"`
		PrivateKeyID string `json:"private_key_id"`
		PrivateKey   string `json:"private_key"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s is not a service account key file: %w", path, err)
	}
	switch {
	case f.Type != "service_account":
		return nil, fmt.Errorf("%s is a %q file; download a key of the service account (IAM > Service accounts > Keys > Add key > JSON)", path, f.Type)
	case f.ClientEmail == "" || f.PrivateKey == "":
		return nil, fmt.Errorf("%s lacks client_email or private_key", path)
	}
	if b, _ := pem.Decode([]byte(f.PrivateKey)); b == nil {
		return nil, fmt.Errorf("%s: private_key is not PEM", path)
	}
	return &ServiceAccount{JSON: data, ClientEmail: f.ClientEmail, ClientID: f.ClientID, PrivateKeyID: f.PrivateKeyID, TokenURI: f.TokenURI}, nil
}

// validateCredentials checks the credential keys of OAuth2 client oc: at
// most one of a secret, a certificate and a service account; certificate
// and key together; a service account only with provider "google".
// Resolve reads the files.
func (l *loader) validateCredentials(oc *OAuth2Client, key func(string) string) {
	hasSecret := oc.ClientSecret != "" || oc.ClientSecretFile != "" || oc.ClientSecretEnv != ""
	hasCert := oc.ClientCertificateFile != "" || oc.ClientKeyFile != ""
	hasSA := oc.ServiceAccountFile != ""
	switch {
	case hasSA && (hasSecret || hasCert):
		l.addf(key("service_account_file"), "a service account is the client's only credential; remove client_secret and client_certificate_file")
	case hasCert && hasSecret:
		l.addf(key("client_certificate_file"), "give the client a secret or a certificate, not both (Microsoft recommends the certificate)")
	case oc.ClientCertificateFile != "" && oc.ClientKeyFile == "":
		l.addf(key("client_certificate_file"), "a certificate credential needs client_key_file, its private key")
	case oc.ClientKeyFile != "" && oc.ClientCertificateFile == "":
		l.addf(key("client_key_file"), "a private key needs client_certificate_file, the certificate registered on the app")
	case hasSA && oc.Provider != "google":
		l.addf(key("service_account_file"), "service accounts with domain-wide delegation are Google's: set provider = \"google\"")
	}
}

// resolveCredentials reads the certificate, key and service account files
// of OAuth2 client oc: the certificate and key must match. It skips what
// validateCredentials refuses.
func (l *loader) resolveCredentials(oc *OAuth2Client, key func(string) string) {
	secrets := countSet(oc.ClientSecret, oc.ClientSecretFile, oc.ClientSecretEnv)
	if oc.ClientCertificateFile != "" && oc.ClientKeyFile != "" && secrets == 0 && oc.ServiceAccountFile == "" {
		certs, err := readCertificateFile(oc.ClientCertificateFile)
		if err != nil {
			l.addf(key("client_certificate_file"), "%v", err)
			return
		}
		k, err := readKeyFile(oc.ClientKeyFile)
		if err != nil {
			l.addf(key("client_key_file"), "%v", err)
			return
		}
		l.warnReadable(key("client_key_file"), oc.ClientKeyFile)
		if pub, ok := certs[0].PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
			l.addf(key("client_key_file"), "%s is not the private key of the certificate in %s", oc.ClientKeyFile, oc.ClientCertificateFile)
			return
		}
		if time.Now().After(certs[0].NotAfter) {
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: %s: the certificate in %s expired on %s; the authorization server will refuse it", l.file, l.ix.line(key("client_certificate_file")), key("client_certificate_file"), oc.ClientCertificateFile, certs[0].NotAfter.Format(time.DateOnly)))
		}
		c := &ClientCertificate{Key: k, NotAfter: certs[0].NotAfter}
		for _, cert := range certs {
			c.Chain = append(c.Chain, cert.Raw)
		}
		oc.Certificate = c
	}
	if oc.ServiceAccountFile != "" && oc.Provider == "google" && secrets == 0 && oc.ClientCertificateFile == "" && oc.ClientKeyFile == "" {
		sa, err := readServiceAccountFile(oc.ServiceAccountFile)
		if err != nil {
			l.addf(key("service_account_file"), "%v", err)
			return
		}
		l.warnReadable(key("service_account_file"), oc.ServiceAccountFile)
		if oc.ClientID == "" {
			oc.ClientID = sa.ClientID
		}
		oc.ServiceAccount = sa
	}
}

// warnReadable warns when a file holding a private key may be read by
// every user.
func (l *loader) warnReadable(key, path string) {
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o004 != 0 {
		l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: %s: %s may be read by every user on this machine (mode %04o); run chmod o-r %s", l.file, l.ix.line(key), key, path, info.Mode().Perm(), path))
	}
}

// validateOAuth2ProfileCredentials checks what a profile's flow needs of
// its client's credentials.
func (l *loader) validateOAuth2ProfileCredentials(p *Profile, key func(string) string) {
	oc := p.Client
	if oc == nil {
		return
	}
	switch {
	case oc.ServiceAccountFile != "" && p.Interactive:
		l.addf(key("interactive"), "OAuth2 client %q is a service account: it impersonates username without a person, so the profile must not be interactive", oc.Name)
	case !p.Interactive && oc.Public():
		l.addf(key("oauth2_client"), "the client credentials flow needs a credential in OAuth2 client %q: client_secret, client_certificate_file (and client_key_file) or, with Google, service_account_file", oc.Name)
	}
}
