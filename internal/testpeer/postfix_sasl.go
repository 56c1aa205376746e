package testpeer

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// PostfixSASL is the SMTP AUTH (RFC 4954) a private Postfix offers, served
// by Cyrus SASL from a sasldb of the instance's own.
type PostfixSASL struct {
	// Users maps "user@domain" to its password.
	Users map[string]string
	// Mechanisms are the SASL mechanisms offered; default PLAIN and LOGIN.
	Mechanisms []string
}

// StartPostfixSASL starts a private Postfix, as StartPostfix does, whose
// smtpd offers STARTTLS with TestPKI's certificate and, after it, AUTH
// with sasl's mechanisms: 235 for a user's password, 535 5.7.8 for any
// other. Only authenticated clients may relay. The system's Postfix and
// SASL configuration are not used. Besides Postfix it needs Cyrus SASL's
// saslpasswd2 (Debian: sasl2-bin) and its PLAIN, LOGIN and sasldb plugins
// (libsasl2-modules, libsasl2-modules-db); the test is skipped without
// them.
func StartPostfixSASL(t testing.TB, relayhost string, sasl PostfixSASL) *Postfix {
	t.Helper()
	skipWithoutPostfix(t)
	saslpasswd2 := skipWithoutCyrusSASL(t)
	mechs := sasl.Mechanisms
	if len(mechs) == 0 {
		mechs = []string{"PLAIN", "LOGIN"}
	}
	dir := worldDir(t, "postfix")
	// Debian's Postfix reads smtpd.conf from the sasl directory beside
	// main.cf, whatever cyrus_sasl_config_path says; elsewhere that
	// parameter names it.
	saslDir := filepath.Join(dir, "etc", "sasl")
	if err := os.MkdirAll(saslDir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(saslDir, "sasldb2")
	names := make([]string, 0, len(sasl.Users))
	for name := range sasl.Users {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		local, domain, ok := cutLast(name, "@")
		if !ok {
			t.Fatalf("PostfixSASL user %q: want user@domain", name)
		}
		// Cyrus SASL keeps "user@domain" as local part and realm.
		cmd := exec.Command(saslpasswd2, "-p", "-c", "-f", db, "-u", domain, local)
		cmd.Stdin = strings.NewReader(sasl.Users[name])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("saslpasswd2 %s: %v: %s", name, err, out)
		}
	}
	// smtpd reads the sasldb as user postfix, at each login; "postfix
	// check" wants root to own what is under the configuration directory.
	if err := os.Chmod(db, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := chgrpPostfix(db); err != nil {
		t.Fatalf("sasldb for user postfix: %v", err)
	}
	conf := "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: " + db +
		"\nmech_list: " + strings.Join(mechs, " ") + "\n"
	if err := os.WriteFile(filepath.Join(saslDir, "smtpd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// smtpd reads its key as root, before it drops privileges.
	pki := TestPKI(t)
	cert, key := filepath.Join(saslDir, "cert.pem"), filepath.Join(saslDir, "key.pem")
	if err := os.WriteFile(cert, pki.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pki.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return startPostfix(t, relayhost, dir, map[string]string{
		"smtpd_tls_security_level":     "may",
		"smtpd_tls_cert_file":          cert,
		"smtpd_tls_key_file":           key,
		"smtpd_tls_auth_only":          "yes",
		"smtpd_sasl_auth_enable":       "yes",
		"smtpd_sasl_type":              "cyrus",
		"smtpd_sasl_path":              "smtpd", // smtpd.conf in cyrus_sasl_config_path
		"cyrus_sasl_config_path":       saslDir,
		"smtpd_sasl_security_options":  "noanonymous",
		"smtpd_recipient_restrictions": "permit_sasl_authenticated, reject",
	})
}

// skipWithoutCyrusSASL skips the test where Postfix has no Cyrus SASL or
// Cyrus SASL lacks saslpasswd2 or a plugin StartPostfixSASL uses, and
// returns saslpasswd2's path.
func skipWithoutCyrusSASL(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("postconf", "-a").Output()
	if err != nil || !strings.Contains("\n"+string(out), "\ncyrus\n") {
		t.Skipf("this Postfix has no Cyrus SASL (postconf -a: %q, %v)", out, err)
	}
	bin, err := exec.LookPath("saslpasswd2")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/saslpasswd2"); err != nil {
			t.Skip("Cyrus SASL's saslpasswd2 is not installed (Debian: apt-get install sasl2-bin)")
		}
	}
	for _, plugin := range []string{"libplain.so", "liblogin.so", "libsasldb.so"} {
		found := false
		for _, d := range []string{"/usr/lib/*/sasl2", "/usr/lib/sasl2", "/usr/lib64/sasl2"} {
			if m, _ := filepath.Glob(filepath.Join(d, plugin+"*")); len(m) > 0 {
				found = true
				break
			}
		}
		if !found {
			t.Skipf("Cyrus SASL's plugin %s is not installed (Debian: apt-get install libsasl2-modules libsasl2-modules-db)", plugin)
		}
	}
	return bin
}

// chgrpPostfix gives name to the group postfix.
func chgrpPostfix(name string) error {
	g, err := user.LookupGroup("postfix")
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return err
	}
	return os.Chown(name, -1, gid)
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
