package main

// Tests of the packaging in dist/: the Debian package's description for
// nfpm, its maintainer scripts, and the container image's files.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nfpmContents reads the src and dst of each contents entry of
// dist/nfpm.yaml (a line-based reading of the YAML this repository writes).
func nfpmContents(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../dist/nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	contents := map[string]string{}
	src := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "- src: "); ok {
			src = v
		} else if v, ok := strings.CutPrefix(line, "dst: "); ok && src != "" {
			contents[v] = src
			src = ""
		}
	}
	return contents
}

// TestDebianPackageContents: the package installs what README and the
// unit name, from files that exist; the staging files release.sh makes
// (bin/, doc/) are the only others; /usr/sbin/sendmail is not claimed.
func TestDebianPackageContents(t *testing.T) {
	contents := nfpmContents(t)
	want := map[string]string{
		"/usr/bin/relay":                     "bin/relay",
		"/lib/systemd/system/relay.service":  "dist/relay.service",
		"/etc/relay/relay.toml":              "dist/relay.toml",
		"/usr/lib/sysusers.d/relay.conf":     "dist/relay.sysusers",
		"/usr/share/doc/relay/copyright":     "dist/deb/copyright",
		"/usr/share/lintian/overrides/relay": "dist/deb/lintian-overrides",
	}
	for dst, src := range want {
		if contents[dst] != src {
			t.Errorf("dist/nfpm.yaml installs %s from %q; want %q", dst, contents[dst], src)
		}
	}
	for dst, src := range contents {
		if strings.HasPrefix(src, "bin/") || strings.HasPrefix(src, "doc/") {
			continue // made by dist/release.sh in the staging directory
		}
		if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
			t.Errorf("dist/nfpm.yaml: %s comes from %s: %v", dst, src, err)
		}
		if strings.Contains(dst, "sendmail") {
			t.Errorf("dist/nfpm.yaml installs %s: the package must not claim sendmail (Postfix and Exim own it)", dst)
		}
	}
	// The unit runs what the package installs, as the user sysusers.d makes.
	unit := unitSettings(t, "../../dist/relay.service")
	if !strings.HasPrefix(unit["Service.ExecStart"][0], "/usr/bin/relay ") {
		t.Errorf("ExecStart = %q; want /usr/bin/relay, which the package installs", unit["Service.ExecStart"])
	}
	sysusers, _ := os.ReadFile("../../dist/relay.sysusers")
	if !strings.Contains(string(sysusers), "\nu relay - ") || !strings.Contains(string(sysusers), " /var/lib/relay\n") {
		t.Errorf("dist/relay.sysusers does not make the user relay with home /var/lib/relay:\n%s", sysusers)
	}
}

// TestDebianMaintainerScripts: the scripts are valid sh, executable, and
// purge, and only purge, deletes /var/lib/relay.
func TestDebianMaintainerScripts(t *testing.T) {
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join("../../dist/deb", name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", path)
		}
		if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", path, err, out)
		}
	}
	postrm, _ := os.ReadFile("../../dist/deb/postrm")
	purge, _, _ := strings.Cut(string(postrm), `if [ "$1" = purge ]; then`)
	if strings.Contains(purge, "rm -rf /var/lib/relay") || !strings.Contains(string(postrm), "\trm -rf /var/lib/relay\n") {
		t.Errorf("dist/deb/postrm must delete /var/lib/relay on purge only:\n%s", postrm)
	}
}

// dockerfile reads the instructions of the Dockerfile, continuation
// lines joined, as "INSTRUCTION arguments".
func dockerfile(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		if cur == "" && (strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur += more
			continue
		}
		out = append(out, strings.Join(strings.Fields(cur+line), " "))
		cur = ""
	}
	return out
}

// TestContainerImage: the Dockerfile copies files that exist, runs as a
// non-root user with /var/lib/relay a volume and data_dir, reads the
// configuration it copies (RELAY_CONFIG), checks its health with relay
// health, and that configuration listens beyond the container's loopback.
func TestContainerImage(t *testing.T) {
	var user, env, health, volume, configDst string
	for _, ins := range dockerfile(t) {
		word, args, _ := strings.Cut(ins, " ")
		switch word {
		case "COPY":
			f := strings.Fields(args)
			if strings.HasPrefix(f[0], "--from") {
				continue
			}
			for _, src := range f[:len(f)-1] {
				if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
					t.Errorf("Dockerfile: COPY %s: %v", src, err)
				}
			}
			if f[0] == "dist/container.toml" {
				configDst = f[1]
			}
		case "USER":
			user = args
		case "ENV":
			env = args
		case "HEALTHCHECK":
			health = args
		case "VOLUME":
			volume = args
		}
	}
	if user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Errorf("USER %q; want a non-root user", user)
	}
	if configDst != "/etc/relay/relay.toml" || env != "RELAY_CONFIG="+configDst {
		t.Errorf("config copied to %q, ENV %q; want /etc/relay/relay.toml and RELAY_CONFIG naming it", configDst, env)
	}
	if !strings.HasSuffix(health, `CMD ["/usr/bin/relay", "health"]`) {
		t.Errorf("HEALTHCHECK %q; want it to run relay health", health)
	}
	if volume != `["/var/lib/relay"]` {
		t.Errorf("VOLUME %s; want /var/lib/relay", volume)
	}

	path, _ := filepath.Abs("../../dist/container.toml")
	code, stdout, stderr := runBinary(t, t.TempDir(), "", "check", "-config", path)
	if code != 0 || strings.Contains(stderr, "warning") {
		t.Fatalf("relay check dist/container.toml: exit %d\n%s%s", code, stdout, stderr)
	}
	data, _ := os.ReadFile(path)
	for _, want := range []string{"\nlisten = \"0.0.0.0:2525\"", "\ndata_dir = \"/var/lib/relay\"", "\nlisten = \"127.0.0.1:8025\""} {
		if !strings.Contains(string(data), want) {
			t.Errorf("dist/container.toml lacks %s", want)
		}
	}
}
