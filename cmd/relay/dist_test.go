package main

// Tests of dist/: the systemd unit and the configuration it starts with.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitSettings reads a unit file into section.key → values.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not KEY=VALUE: %q", path, line)
			}
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	return settings
}

// TestUnitFileSettings: dist/relay.service says what README and issue 6
// promise.
func TestUnitFileSettings(t *testing.T) {
	s := unitSettings(t, "../../dist/relay.service")
	want := map[string]string{
		"Service.Type":                       "notify",
		"Service.ExecStart":                  "/usr/bin/relay serve -config /etc/relay/relay.toml",
		"Service.ExecReload":                 "/bin/kill -HUP $MAINPID",
		"Service.Restart":                    "on-failure",
		"Service.RestartPreventExitStatus":   strconv.Itoa(exitConfig),
		"Service.StateDirectory":             "relay",
		"Service.ConfigurationDirectory":     "relay",
		"Service.ProtectSystem":              "strict",
		"Service.ProtectHome":                "yes",
		"Service.NoNewPrivileges":            "yes",
		"Service.PrivateTmp":                 "yes",
		"Service.RestrictAddressFamilies":    "AF_INET AF_INET6 AF_UNIX",
		"Service.CapabilityBoundingSet":      "",
		"Service.AmbientCapabilities":        "",
		"Service.MemoryDenyWriteExecute":     "yes",
		"Service.UMask":                      "0077",
		"Service.User":                       "relay",
		"Service.WorkingDirectory":           "/var/lib/relay",
		"Install.WantedBy":                   "multi-user.target",
		"Service.ProtectKernelTunables":      "yes",
		"Service.ProtectControlGroups":       "yes",
		"Service.RestrictNamespaces":         "yes",
		"Service.LockPersonality":            "yes",
		"Service.SystemCallArchitectures":    "native",
		"Service.ConfigurationDirectoryMode": "0755",
	}
	for k, v := range want {
		got, ok := s[k]
		if !ok || got[len(got)-1] != v {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	// relay serve validates the file itself and exits 2; a failing
	// ExecStartPre= would be restarted by Restart=on-failure in a loop, as
	// RestartPreventExitStatus= looks at the main process only.
	if got, ok := s["Service.ExecStartPre"]; ok {
		t.Errorf("ExecStartPre = %q; want none", got)
	}
	if got := s["Service.SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q; want @system-service first", got)
	}
	// A timeout shorter than the drain would kill transactions in progress.
	if d, err := time.ParseDuration(s["Service.TimeoutStopSec"][0]); err != nil || d <= shutdownGrace {
		t.Errorf("TimeoutStopSec = %q; want more than the %v drain", s["Service.TimeoutStopSec"], shutdownGrace)
	}
	unit, _ := os.ReadFile("../../dist/relay.service")
	if !strings.Contains(string(unit), "AmbientCapabilities=CAP_NET_BIND_SERVICE") || !strings.Contains(string(unit), "CapabilityBoundingSet=CAP_NET_BIND_SERVICE") {
		t.Error("the unit does not say how to allow a port below 1024")
	}
}

// TestDistConfig: the configuration the unit starts with is valid and
// keeps its data in the unit's StateDirectory.
func TestDistConfig(t *testing.T) {
	path, _ := filepath.Abs("../../dist/relay.toml")
	code, stdout, stderr := runBinary(t, t.TempDir(), "", "check", "-config", path)
	if code != 0 {
		t.Fatalf("relay check dist/relay.toml: exit %d\n%s%s", code, stdout, stderr)
	}
	if strings.Contains(stderr, "warning") {
		t.Errorf("relay check dist/relay.toml warns:\n%s", stderr)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "\ndata_dir = \"/var/lib/relay\"") {
		t.Errorf("dist/relay.toml does not set data_dir = \"/var/lib/relay\" (StateDirectory=relay)")
	}
}

// TestUnitFileVerifies runs systemd-analyze verify on dist/relay.service,
// with the binaries it names pointed at the relay built for the tests
// (verify refuses a unit whose ExecStart does not exist). systemd-analyze
// exits 0 after some warnings, such as an unknown key, so any line about
// the unit fails the test too.
func TestUnitFileVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd; .ci/run does): cannot verify dist/relay.service")
	}
	unit, err := os.ReadFile("../../dist/relay.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "=/usr/bin/relay ") {
		t.Fatal("dist/relay.service does not run /usr/bin/relay")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "=/usr/bin/relay ", "="+relayBin+" ")), 0o644)
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "relay.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
