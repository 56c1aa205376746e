package clients

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// send is one message a client program sends.
type send struct {
	addr       string // relay's listener, host:port
	security   string // "plain", "starttls" or "tls" (implicit TLS)
	mech       string // SASL mechanism, or "" for no login
	user, pass string
	from       string
	subject    string
	attachment string // file to attach, or ""
	in         files
	caFile     string // the test CA: every client verifies the certificate
	dir        string // the case's own temporary directory
	shared     string // a directory that every case of the run shares
}

// scriptArgs are the arguments of the test's own sender scripts
// (testdata/): host port security mechanism user password from to subject
// bodyFile attachmentFile caFile.
func (s send) scriptArgs() []string {
	host, port, _ := net.SplitHostPort(s.addr)
	return []string{host, port, s.security, s.mech, s.user, s.pass, s.from, recipient, s.subject, s.in.body, s.attachment, s.caFile}
}

// program is an SMTP client program that legacy applications send with.
type program struct {
	name string
	// missing says which package to install when the program is not
	// there, or "" when it is.
	missing func() string
	// command makes the command that sends s; it may write files into
	// s.dir and set the command's stdin.
	command func(ctx context.Context, t *testing.T, s send) *exec.Cmd
}

var programs = []program{
	{name: "javamail", missing: javaMissing(javaxMail), command: javaCommand(javaxMail)},
	{name: "jakartamail", missing: javaMissing(jakartaMail), command: javaCommand(jakartaMail)},
	{name: "nodemailer", missing: nodemailerMissing, command: scriptCommand("node", filepath.Join("testdata", "node", "send.js"))},
	{name: "phpmailer", missing: phpMailerMissing, command: scriptCommand("php", filepath.Join("testdata", "send.php"))},
	{name: "python-smtplib", missing: commandMissing("python3", "python3"), command: scriptCommand("python3", filepath.Join("testdata", "send.py"))},
	{name: "msmtp", missing: commandMissing("msmtp", "msmtp"), command: msmtpCommand},
	{name: "swaks", missing: swaksMissing, command: swaksCommand},
	{name: "curl", missing: commandMissing("curl", "curl"), command: curlCommand},
}

func commandMissing(name, pkg string) func() string {
	return func() string {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Sprintf("%s is not installed (Debian package %s; .ci/run installs it)", name, pkg)
		}
		return ""
	}
}

func fileMissing(file, pkg string) string {
	if _, err := os.Stat(file); err != nil {
		return fmt.Sprintf("%s is missing (Debian package %s; .ci/run installs it)", file, pkg)
	}
	return ""
}

func scriptCommand(interpreter, script string) func(context.Context, *testing.T, send) *exec.Cmd {
	return func(ctx context.Context, _ *testing.T, s send) *exec.Cmd {
		return exec.CommandContext(ctx, interpreter, append([]string{script}, s.scriptArgs()...)...)
	}
}

// phpMailerAutoload is where Debian's libphp-phpmailer installs PHPMailer.
const phpMailerAutoload = "/usr/share/php/libphp-phpmailer/autoload.php"

func phpMailerMissing() string {
	if m := commandMissing("php", "php-cli")(); m != "" {
		return m
	}
	return fileMissing(phpMailerAutoload, "libphp-phpmailer")
}

func nodemailerMissing() string {
	if m := commandMissing("node", "nodejs")(); m != "" {
		return m
	}
	if _, err := os.Stat(filepath.Join("testdata", "node", "node_modules", "nodemailer")); err != nil {
		return "nodemailer is not installed: run `npm ci` in clients/testdata/node (.ci/run does)"
	}
	return ""
}

// javaAPI is one of the two Java mail APIs, as Debian packages them.
type javaAPI struct {
	name      string   // the package prefix in the source: javax.mail or jakarta.mail
	pkg       string   // Debian package
	classpath []string // its jars
}

var (
	javaxMail = &javaAPI{name: "javax.mail", pkg: "libmail-java", classpath: []string{"/usr/share/java/javax.mail.jar", "/usr/share/java/javax.activation.jar"}}
	// Jakarta Mail 2.0 is JavaMail with its packages renamed.
	jakartaMail = &javaAPI{name: "jakarta.mail", pkg: "libjakarta-mail-java", classpath: []string{"/usr/share/java/jakarta-mail.jar", "/usr/share/java/jakarta-activation.jar"}}
)

func javaMissing(api *javaAPI) func() string {
	return func() string {
		for _, tool := range []string{"java", "javac"} {
			if m := commandMissing(tool, "default-jdk-headless")(); m != "" {
				return m
			}
		}
		for _, jar := range api.classpath {
			if m := fileMissing(jar, api.pkg); m != "" {
				return m
			}
		}
		return ""
	}
}

// javaBuilds holds a *javaBuild for each javaBuildKey.
var javaBuilds sync.Map

type javaBuildKey struct {
	api    *javaAPI
	shared string
}

type javaBuild struct {
	once sync.Once
	dir  string
	err  error
}

// compile compiles testdata/Send.java against api once into the shared
// directory and returns the directory that holds Send.class.
func (api *javaAPI) compile(t *testing.T, shared string) string {
	t.Helper()
	v, _ := javaBuilds.LoadOrStore(javaBuildKey{api, shared}, &javaBuild{})
	b := v.(*javaBuild)
	b.once.Do(func() {
		b.dir = filepath.Join(shared, "java-"+api.name)
		src, err := os.ReadFile(filepath.Join("testdata", "Send.java"))
		if err != nil {
			b.err = err
			return
		}
		src = bytes.ReplaceAll(src, []byte("javax.mail."), []byte(api.name+"."))
		file := filepath.Join(b.dir, "Send.java")
		if b.err = os.MkdirAll(b.dir, 0o700); b.err != nil {
			return
		}
		if b.err = os.WriteFile(file, src, 0o600); b.err != nil {
			return
		}
		out, err := exec.Command("javac", "-nowarn", "-cp", strings.Join(api.classpath, ":"), "-d", b.dir, file).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("javac: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("compile Send.java against %s: %v", api.name, b.err)
	}
	return b.dir
}

func javaCommand(api *javaAPI) func(context.Context, *testing.T, send) *exec.Cmd {
	return func(ctx context.Context, t *testing.T, s send) *exec.Cmd {
		cp := strings.Join(append([]string{api.compile(t, s.shared)}, api.classpath...), ":")
		// JavaMail checks the server's name in its certificate
		// (mail.smtp.ssl.checkserveridentity) against DNS names only: an
		// IP address never matches, so Java connects by name.
		args := s.scriptArgs()
		args[0] = "localhost"
		// C1 only: these short runs start faster.
		args = append([]string{"-XX:TieredStopAtLevel=1", "-Djava.net.preferIPv4Stack=true", "-cp", cp, "Send"}, args...)
		return exec.CommandContext(ctx, "java", args...)
	}
}

// msmtpCommand sends a composed message with msmtp, configured by a file
// as msmtp users do.
func msmtpCommand(ctx context.Context, t *testing.T, s send) *exec.Cmd {
	host, port, _ := net.SplitHostPort(s.addr)
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	auth := "off"
	if s.mech != "" {
		auth = strings.ToLower(s.mech)
	}
	conf := fmt.Sprintf(`account default
host %s
port %s
from %s
timeout 60
tls %s
tls_starttls %s
tls_trust_file %s
auth %s
user %s
password "%s"
`, host, port, s.from, onOff(s.security != "plain"), onOff(s.security == "starttls"), s.caFile, auth, s.user, s.pass)
	file := filepath.Join(s.dir, "msmtprc")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "msmtp", "-C", file, recipient)
	cmd.Stdin = bytes.NewReader(composed(t, s.from, s.subject, s.attachment))
	return cmd
}

func swaksMissing() string {
	if m := commandMissing("swaks", "swaks")(); m != "" {
		return m
	}
	// swaks only recommends the module it speaks TLS with.
	if exec.Command("perl", "-MNet::SSLeay", "-e1").Run() != nil {
		return "swaks cannot speak TLS without Net::SSLeay (Debian package libnet-ssleay-perl; .ci/run installs it)"
	}
	return ""
}

// swaksCommand sends with swaks, which builds the MIME message itself.
func swaksCommand(ctx context.Context, _ *testing.T, s send) *exec.Cmd {
	host, port, _ := net.SplitHostPort(s.addr)
	args := []string{"--silent", "2", "--server", host, "--port", port, "--from", s.from, "--to", recipient,
		"--header", "Subject: " + s.subject, "--body", "@" + s.in.body}
	if s.attachment == "" {
		args = append(args, "--add-header", "MIME-Version: 1.0", "--add-header", "Content-Type: text/plain; charset=utf-8")
	} else {
		args = append(args, "--attach-type", "application/octet-stream", "--attach", "@"+s.attachment)
	}
	switch s.security {
	case "starttls":
		args = append(args, "--tls", "--tls-verify", "--tls-ca-path", s.caFile)
	case "tls":
		args = append(args, "--tls-on-connect", "--tls-verify", "--tls-ca-path", s.caFile)
	}
	if s.mech != "" {
		args = append(args, "--auth", s.mech, "--auth-user", s.user, "--auth-password", s.pass)
	}
	return exec.CommandContext(ctx, "swaks", args...)
}

// curlCommand uploads a composed message (curl -T, README's example), or
// with an attachment lets curl build the MIME message (-F).
func curlCommand(ctx context.Context, t *testing.T, s send) *exec.Cmd {
	scheme := "smtp"
	if s.security == "tls" {
		scheme = "smtps"
	}
	args := []string{"-sS", "--max-time", "120", "--mail-from", s.from, "--mail-rcpt", recipient, "--cacert", s.caFile}
	if s.security == "starttls" {
		args = append(args, "--ssl-reqd")
	}
	if s.mech != "" {
		args = append(args, "--user", s.user+":"+s.pass, "--login-options", "AUTH="+s.mech)
	}
	if s.attachment == "" {
		file := filepath.Join(s.dir, "message.eml")
		if err := os.WriteFile(file, composed(t, s.from, s.subject, ""), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-T", file)
	} else {
		args = append(args,
			"-H", "From: "+s.from, "-H", "To: "+recipient, "-H", "Subject: "+s.subject,
			"-H", "Date: "+time.Now().Format(time.RFC1123Z),
			"-H", fmt.Sprintf("Message-ID: <%d.curl@client.test>", time.Now().UnixNano()),
			"-F", "=<"+s.in.body+";type=text/plain; charset=utf-8;encoder=quoted-printable",
			"-F", "file=@"+s.attachment+";type=application/octet-stream;encoder=base64")
	}
	return exec.CommandContext(ctx, "curl", append(args, "--url", scheme+"://"+s.addr)...)
}

// run runs cmd and fails t with its output unless it succeeds.
func run(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(out.String(), 4000))
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
