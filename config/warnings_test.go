package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaymail/relay/config"
)

func TestLoadWorldReadableWarnings(t *testing.T) {
	const (
		inlinePassword = `[[profiles]]
name = "mailhost"
hostname = "mail.example.com"
use_starttls = true
username = "relay"
password = "hunter2"
`
		passwordFile = `[[profiles]]
name = "mailhost"
hostname = "mail.example.com"
use_starttls = true
username = "relay"
password_file = "SECRET"
`
		inlineClientSecret = `[[oauth2_clients]]
name = "entra"
provider = "microsoft"
tenant = "contoso.onmicrosoft.com"
client_id = "relay"
client_secret = "hunter2"

[[profiles]]
name = "office365"
hostname = "smtp.office365.com"
use_starttls = true
username = "alarms@example.com"
oauth2_client = "entra"
`
		// A bcrypt hash is not a secret worth a warning.
		userHash = `[[users]]
name = "scada"
password_hash = "$2a$04$yjf7D3Hr3OAFkYXU.sYIUe8x.CiKPyIovlXZRmT8q2fDVq36BCIP6"
profile = "mailhost"

[[profiles]]
name = "mailhost"
hostname = "mail.example.com"
`
	)
	tests := []struct {
		name       string
		doc        string
		mode       os.FileMode // of the configuration file
		secretMode os.FileMode // of SECRET, when the document names it
		want       string      // "CONFIG" or "SECRET": the file the warning names; "": no warning
	}{
		{"inline password 0644", inlinePassword, 0o644, 0, "CONFIG"},
		{"inline password 0604", inlinePassword, 0o604, 0, "CONFIG"},
		{"inline password 0600", inlinePassword, 0o600, 0, ""},
		{"inline password 0640", inlinePassword, 0o640, 0, ""},
		{"inline client secret 0644", inlineClientSecret, 0o644, 0, "CONFIG"},
		{"user password hash 0644", userHash, 0o644, 0, ""},
		{"password_file 0644", passwordFile, 0o600, 0o644, "SECRET"},
		{"password_file 0600", passwordFile, 0o644, 0o600, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			secret := filepath.Join(dir, "mailhost.password")
			if err := os.WriteFile(secret, []byte("hunter2\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(secret, tt.secretMode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "relay.toml")
			doc := strings.ReplaceAll(tt.doc, "SECRET", secret)
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			// Set the mode explicitly: WriteFile's is subject to the umask.
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}

			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("Load(%q) = %v; want no error", path, err)
			}
			switch tt.want {
			case "":
				if len(cfg.Warnings) != 0 {
					t.Errorf("Load(%q).Warnings = %q; want none", path, cfg.Warnings)
				}
			default:
				named := map[string]string{"CONFIG": path, "SECRET": secret}[tt.want]
				if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], named) || !strings.Contains(cfg.Warnings[0], "read") {
					t.Errorf("Load(%q).Warnings = %q; want one that %s may be read by others", path, cfg.Warnings, named)
				}
			}
		})
	}
}

// TestCredentialFileWarnings: a private key or service account key file
// that every user may read gets a warning naming it.
func TestCredentialFileWarnings(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o600} {
		dir := t.TempDir()
		for _, name := range []string{"entra.crt", "entra.key", "sa.json"} {
			data, err := os.ReadFile(filepath.Join("../testdata/config/secrets", name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "relay.toml")
		doc := strings.ReplaceAll(`[[oauth2_clients]]
name = "entra-cert"
provider = "microsoft"
tenant = "contoso.onmicrosoft.com"
client_id = "relay"
client_certificate_file = "DIR/entra.crt"
client_key_file = "DIR/entra.key"

[[oauth2_clients]]
name = "workspace"
provider = "google"
service_account_file = "DIR/sa.json"

[[profiles]]
name = "office365"
hostname = "smtp.office365.com"
use_starttls = true
username = "alarms@example.com"
oauth2_client = "entra-cert"
`, "DIR", dir)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("Load = %v", err)
		}
		w := strings.Join(cfg.Warnings, "\n")
		if mode == 0o600 && w != "" {
			t.Errorf("mode 0600: warnings %q; want none", w)
		}
		if mode == 0o644 && (len(cfg.Warnings) != 2 || !strings.Contains(w, "entra.key may be read by every user") || !strings.Contains(w, "sa.json may be read by every user")) {
			t.Errorf("mode 0644: warnings %q; want one for the key and one for the service account file", w)
		}
	}
}
