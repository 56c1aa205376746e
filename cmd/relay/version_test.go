package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name                 string
		ldVersion, ldCommit  string
		info                 *debug.BuildInfo
		wantVersion, wantCom string
	}{
		{"no build info", "dev", "", nil, "dev", "unknown"},
		{"go build in a checkout", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("0a304a5", "false")}, "dev", "0a304a5"},
		{"uncommitted changes", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("0a304a5", "true")}, "dev", "0a304a5+modified"},
		{"go install pkg@version", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0", "unknown"},
		{"-ldflags -X wins", "1.3.0", "abc", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: vcs("0a304a5", "true")}, "1.3.0", "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v, c string) { version, commit = v, c }(version, commit)
			version, commit = tc.ldVersion, tc.ldCommit
			v, c := buildVersion(tc.info)
			if v != tc.wantVersion || c != tc.wantCom {
				t.Errorf("buildVersion = %q, %q; want %q, %q", v, c, tc.wantVersion, tc.wantCom)
			}
		})
	}
}

// TestGoInstall: `go install ./cmd/relay` puts a relay binary in GOBIN,
// and the -ldflags README documents set what relay version prints.
func TestGoInstall(t *testing.T) {
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", "-ldflags", "-X main.version=1.2.3-test -X main.commit=c0ffee", "./cmd/relay")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install ./cmd/relay: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "relay"), "version").Output()
	if err != nil {
		t.Fatalf("installed relay version: %v", err)
	}
	if !strings.HasPrefix(string(out), "relay 1.2.3-test (commit c0ffee, go") {
		t.Errorf("relay version = %q; want relay 1.2.3-test (commit c0ffee, go...", out)
	}
}
