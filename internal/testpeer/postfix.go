package testpeer

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Sink is Postfix's smtp-sink listening on a loopback port, dumping each
// message it receives into a file of its own.
type Sink struct {
	Addr string
	dir  string
}

// StartSink starts smtp-sink with extra options (such as "-p": no
// PIPELINING); it stops when the test ends. The test is skipped where
// Postfix's tools are not installed.
func StartSink(t testing.TB, opts ...string) *Sink {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/smtp-sink"); err != nil {
			t.Skip("Postfix's smtp-sink is not installed (Debian: apt-get install postfix)")
		}
	}
	dir := worldDir(t, "sink")
	addr := FreeAddr(t)
	args := append([]string{}, opts...)
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, "-d", dir+"/%M.", addr, "16")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start smtp-sink: %v", err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	waitListening(t, addr, &out)
	return &Sink{Addr: addr, dir: dir}
}

// Messages returns the messages the sink received, oldest first, as it
// dumped them: LF line endings, its own headers and Received taken off.
// It waits up to timeout for n of them.
func (s *Sink) Messages(t testing.TB, n int, timeout time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		files, _ := filepath.Glob(filepath.Join(s.dir, "*"))
		if len(files) >= n || time.Now().After(deadline) {
			var msgs [][]byte
			sort.Slice(files, func(i, j int) bool { return modTime(files[i]).Before(modTime(files[j])) })
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, stripSinkHeaders(b))
			}
			return msgs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func modTime(f string) time.Time {
	fi, err := os.Stat(f)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// stripSinkHeaders drops smtp-sink's X-* lines and its Received field
// (three lines) and the empty line it appends.
func stripSinkHeaders(b []byte) []byte {
	i := bytes.Index(b, []byte("\n\tby smtp-sink"))
	if i < 0 {
		return b
	}
	rest := b[i+1:]
	for n := 0; n < 2; n++ { // the "by" line and the date line
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			rest = rest[j+1:]
		}
	}
	return bytes.TrimSuffix(rest, []byte("\n"))
}

// Postfix is a private Postfix instance: its smtpd on a loopback port,
// relaying everything to relayhost, with its own configuration, queue and
// log in a temporary directory.
type Postfix struct {
	Addr string
	dir  string
}

// StartPostfix starts a private Postfix that relays to relayhost
// (host:port). It needs root and Debian's postfix package; the test is
// skipped with a message otherwise. Postfix stops when the test ends.
func StartPostfix(t testing.TB, relayhost string) *Postfix {
	t.Helper()
	skipWithoutPostfix(t)
	return startPostfix(t, relayhost, worldDir(t, "postfix"), nil)
}

// skipWithoutPostfix skips the test where a private Postfix cannot run.
func skipWithoutPostfix(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("postfix"); err != nil {
		t.Skip("Postfix is not installed (Debian: apt-get install postfix)")
	}
	if os.Geteuid() != 0 {
		t.Skip("a private Postfix instance needs root")
	}
	if _, err := os.Stat("/etc/postfix/master.cf"); err != nil {
		t.Skip("Postfix has no /etc/postfix/master.cf")
	}
}

// startPostfix starts a private Postfix in dir (made by worldDir) that
// relays to relayhost; params replace or add main.cf parameters.
func startPostfix(t testing.TB, relayhost, dir string, params map[string]string) *Postfix {
	t.Helper()
	addr := FreeAddr(t)
	for _, d := range []string{"etc", "spool", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	var mc strings.Builder
	for _, line := range strings.Split(string(master), "\n") {
		if f := strings.Fields(line); len(f) > 7 && f[0] == "smtp" && f[1] == "inet" {
			line = addr + " inet n - n - - smtpd"
		}
		mc.WriteString(line + "\n")
	}
	host, port, _ := net.SplitHostPort(relayhost)
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
myhostname = relay-test.localdomain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [%[2]s]:%[3]s
smtp_host_lookup = native
disable_dns_lookups = yes
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = /dev/stdout
in_flow_delay = 0
smtpd_recipient_restrictions = permit_mynetworks, reject
`, dir, host, port)
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("master.cf", mc.String())
	write("main.cf", withParams(mainCF, params))
	if out, err := exec.Command("chown", "postfix:postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Skipf("chown postfix: %v: %s", err, out)
	}
	exec.Command("postfix", "-c", filepath.Join(dir, "etc"), "post-install", "create-missing").Run()
	log, err := os.Create(filepath.Join(dir, "maillog"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("postfix", "-c", filepath.Join(dir, "etc"), "start-fg")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	p := &Postfix{Addr: addr, dir: dir}
	t.Cleanup(func() {
		exec.Command("postfix", "-c", filepath.Join(dir, "etc"), "stop").Run()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		log.Close()
	})
	waitListening(t, addr, nil)
	return p
}

// withParams is main.cf with params replacing the parameters it sets and
// the others added at its end, in name order.
func withParams(mainCF string, params map[string]string) string {
	left := map[string]string{}
	for k, v := range params {
		left[k] = v
	}
	lines := strings.Split(strings.TrimSuffix(mainCF, "\n"), "\n")
	for i, line := range lines {
		name, _, _ := strings.Cut(line, " = ")
		if v, ok := left[name]; ok {
			lines[i] = name + " = " + v
			delete(left, name)
		}
	}
	names := make([]string, 0, len(left))
	for k := range left {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lines = append(lines, k+" = "+left[k])
	}
	return strings.Join(lines, "\n") + "\n"
}

// Log returns what Postfix logged so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// worldDir is a temporary directory that Postfix's unprivileged users can
// enter (t.TempDir's parents are private to root).
func worldDir(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "relay-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// waitListening waits (at most 10 s) until something accepts on addr.
func waitListening(t testing.TB, addr string, out *bytes.Buffer) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	msg := ""
	if out != nil {
		msg = out.String()
	}
	t.Fatalf("nothing listens on %s after 10 s %s", addr, msg)
}
