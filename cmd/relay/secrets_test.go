package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPrintsNoSecret: `relay check` on configurations holding
// passwords and client secrets, inline, in files and in the environment,
// valid or broken on the very line of the secret, never prints a secret
// (at most the first two characters of a value a TOML syntax error
// points at, which BurntSushi/toml quotes).
func TestCheckPrintsNoSecret(t *testing.T) {
	const (
		// Random-looking, so that no part of one is an ordinary word.
		profilePW = "zq7Kv2xW9pLm4Rt8Yb"
		clientSec = "Hc3Jd8Nf1Tg6Wm0Qs5"
		userPW    = "Ue4Rk9Sb2Vy7Lp1Xa3"
		filePW    = "Fg5Zh0Mc8Dn3Bq6Jw2"
	)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "mailhost.password")
	if err := os.WriteFile(pwFile, []byte(filePW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_TEST_USER_PW", userPW)
	valid := `
[server]
data_dir = "` + dir + `"

[[users]]
name = "scada"
password_env = "RELAY_TEST_USER_PW"
profile = "mailhost"

[[profiles]]
name = "mailhost"
hostname = "mail.example.com"
username = "relay@example.com"
password = "` + profilePW + `"

[[profiles]]
name = "filed"
hostname = "mail.example.com"
username = "relay@example.com"
password_file = "` + pwFile + `"

[[profiles]]
name = "office365"
hostname = "smtp.office365.com"
port = 587
use_starttls = true
username = "alarms@example.com"
oauth2_client = "entra"
scope = "https://outlook.office365.com/.default"

[[oauth2_clients]]
name = "entra"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret = "` + clientSec + `"
auth_url = "https://login.example.com/authorize"
token_url = "https://login.example.com/token"
`
	broken := map[string]string{
		"valid":                 valid,
		"unterminated password": strings.Replace(valid, `password = "`+profilePW+`"`, `password = "`+profilePW, 1),
		"bare password":         strings.Replace(valid, `password = "`+profilePW+`"`, `password = `+profilePW, 1),
		"bad escape":            strings.Replace(valid, `password = "`+profilePW+`"`, `password = "`+profilePW+`\q"`, 1),
		"password as array":     strings.Replace(valid, `password = "`+profilePW+`"`, `password = ["`+profilePW+`"]`, 1),
		"password twice":        strings.Replace(valid, `password = "`+profilePW+`"`, `password = "`+profilePW+`"`+"\npassword_file = \""+pwFile+`"`, 1),
		"secret under a typo":   strings.Replace(valid, `client_secret = "`, `client_secert = "`, 1),
		"secret after junk":     strings.Replace(valid, `client_secret = "`+clientSec+`"`, `client_secret = "`+clientSec+`" junk`, 1),
		"user password as hash": strings.Replace(valid, `password_env = "RELAY_TEST_USER_PW"`, `password_hash = "`+userPW+`"`, 1),
	}
	for name, text := range broken {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, "relay.toml")
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil { // readable by all: the warning must not quote the secret either
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := runCheck([]string{"-config", file}, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if name == "valid" && (code != 0 || !strings.Contains(out, "office365")) {
				t.Fatalf("relay check of the valid file: exit %d\n%s", code, out)
			}
			if name == "valid" && !strings.Contains(out, "every user on this machine may read it (mode 0644)") {
				t.Errorf("relay check does not warn that the file with secrets is readable by all:\n%s", out)
			}
			if name != "valid" && code == 0 {
				t.Fatalf("relay check accepted a broken file:\n%s", out)
			}
			for _, secret := range []string{profilePW, clientSec, userPW, filePW} {
				for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))[:12]} {
					for i := 0; i+6 <= len(form); i++ {
						if strings.Contains(out, form[i:i+6]) {
							t.Fatalf("relay check printed %q, part of a secret:\n%s", form[i:i+6], out)
						}
					}
				}
			}
		})
	}
}
