package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
)

// outside names a file, a variable, a certificate, a key and a CA file
// that do not exist: Parse must not care, Resolve must name each.
const outside = `[server]
tls_cert_file = "/nonexistent/cert.pem"
tls_key_file = "/nonexistent/key.pem"

[[users]]
name = "scada"
password_env = "RELAY_TEST_UNSET_VARIABLE"
profile = "mailhost"

[[oauth2_clients]]
name = "entra"
provider = "microsoft"
tenant = "00000000-0000-0000-0000-000000000000"
client_id = "relay"
client_certificate_file = "/nonexistent/entra.crt"
client_key_file = "/nonexistent/entra.key"

[[profiles]]
name = "mailhost"
hostname = "mail.example.com"
use_starttls = true
username = "relay"
password_file = "/nonexistent/password"
tls_ca_file = "/nonexistent/ca.pem"

[[profiles]]
name = "o365"
oauth2_client = "entra"
hostname = "outlook.office365.com"
use_ssl = true
port = 993
username = "plant@example.com"
`

func TestParseReadsOnlyTheDocument(t *testing.T) {
	t.Setenv(unsetVariable, "")
	os.Unsetenv(unsetVariable)
	cfg, err := config.Parse("relay.toml", []byte(outside))
	if err != nil {
		t.Fatalf("Parse: %v; want no error: nothing outside the document is read", err)
	}
	if p := cfg.Profile("o365"); p.AuthMethod() != "xoauth2 (client credentials, certificate)" {
		t.Errorf("unresolved AuthMethod() = %q; want the certificate flow", p.AuthMethod())
	}
	err = cfg.Resolve()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Resolve = %v; want a *config.Error", err)
	}
	want := []string{
		"relay.toml:2: server.tls_cert_file: cannot load the certificate and key",
		"relay.toml:7: users[0].password_env: the environment variable RELAY_TEST_UNSET_VARIABLE is not set or empty",
		"relay.toml:15: oauth2_clients[0].client_certificate_file: cannot read /nonexistent/entra.crt: no such file or directory",
		"relay.toml:23: profiles[0].password_file: cannot read /nonexistent/password: no such file or directory",
		"relay.toml:24: profiles[0].tls_ca_file: cannot read /nonexistent/ca.pem: no such file or directory",
	}
	if len(ce.Problems) != len(want) {
		t.Errorf("Resolve found %d problems; want %d:\n%v", len(ce.Problems), len(want), err)
	}
	for i, w := range want {
		if i < len(ce.Problems) && !strings.HasPrefix(ce.Problems[i].String(), w) {
			t.Errorf("problem %d = %q; want %q…", i, ce.Problems[i], w)
		}
	}
}

// TestResolveFillsSecrets: what Resolve reads lands where relay uses it.
func TestResolveFillsSecrets(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "password")
	if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_TEST_USER_PASSWORD", "s3cret")
	doc := strings.NewReplacer(
		`tls_cert_file = "/nonexistent/cert.pem"`, `tls_cert_file = "../testdata/config/secrets/entra.crt"`,
		`tls_key_file = "/nonexistent/key.pem"`, `tls_key_file = "../testdata/config/secrets/entra.key"`,
		"RELAY_TEST_UNSET_VARIABLE", "RELAY_TEST_USER_PASSWORD",
		"/nonexistent/entra.", "../testdata/config/secrets/entra.",
		"/nonexistent/password", secret,
		"/nonexistent/ca.pem", "../testdata/config/secrets/entra.crt",
	).Replace(outside)
	cfg, err := config.Parse("relay.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Certificate != nil || cfg.Profile("mailhost").Password != "" || cfg.Users[0].PasswordHash != "" {
		t.Fatalf("Parse filled what Resolve reads")
	}
	if err := cfg.Resolve(); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if cfg.Server.Certificate == nil {
		t.Error("Server.Certificate = nil; want tls_cert_file's")
	}
	if p := cfg.Profile("mailhost"); p.Password != "hunter2" || len(p.CACerts) != 1 {
		t.Errorf("mailhost: Password %q, %d CA certificates; want hunter2, 1", p.Password, len(p.CACerts))
	}
	if oc := cfg.OAuth2ClientNamed("entra"); oc.Certificate == nil {
		t.Error("entra: Certificate = nil; want client_certificate_file's")
	}
	if h := cfg.Users[0].PasswordHash; !strings.HasPrefix(h, "$2") {
		t.Errorf("users[0].PasswordHash = %q; want the bcrypt hash of password_env", h)
	}
}

// TestResolveCAFileWithoutCertificate: a tls_ca_file that holds no
// certificate is refused where the file is named, not when relay first
// connects upstream.
func TestResolveCAFileWithoutCertificate(t *testing.T) {
	doc := "[[profiles]]\nname = \"mailhost\"\nhostname = \"mail.example.com\"\ntls_ca_file = \"../testdata/config/secrets/erp.password\"\n"
	cfg, err := config.Parse("relay.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := "relay.toml:4: profiles[0].tls_ca_file: ../testdata/config/secrets/erp.password holds no PEM certificate"
	if err := cfg.Resolve(); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Resolve = %v; want %s…", err, want)
	}
}
