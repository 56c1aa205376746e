package main

// Tests of dist/relay.1, the manual page the Debian package installs: it
// documents every command and every flag the program defines, and no flag
// it does not; groff renders it without a warning; nfpm installs it.

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const manPage = "../../dist/relay.1"

// manSection is one command's part of the page: the .SS section named
// after it.
type manSection struct {
	synopsis string          // the text before the section's first paragraph, in one line
	tags     map[string]bool // the options in the tags of its .TP paragraphs
	tagWords map[string]bool // every word of those tags
}

// roffEscape matches the escapes the page uses for fonts and characters.
var roffEscape = regexp.MustCompile(`\\f[BIRP]|\\\(\w\w|\\&|\\\|`)

// plainRoff turns one line of roff into its words: without the macro name,
// quotes and font escapes, with \- as "-" and \e as "\".
func plainRoff(line string) string {
	if strings.HasPrefix(line, ".") {
		_, line, _ = strings.Cut(line, " ")
	}
	line = strings.ReplaceAll(line, `\-`, "-")
	line = strings.ReplaceAll(line, `\e`, `\`)
	line = roffEscape.ReplaceAllString(line, " ")
	return strings.ReplaceAll(line, `"`, " ")
}

// optionToken matches an option in plain text: -x, -word-word, --help.
var optionToken = regexp.MustCompile(`(?:^|[\s,(\[|])(--?[A-Za-z][A-Za-z0-9-]*)`)

func options(plain string) []string {
	var opts []string
	for _, m := range optionToken.FindAllStringSubmatch(plain, -1) {
		opts = append(opts, m[1])
	}
	return opts
}

// readManPage splits the COMMANDS of dist/relay.1 into its .SS sections.
func readManPage(t *testing.T) map[string]*manSection {
	t.Helper()
	data, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]*manSection{}
	var cur *manSection
	inSynopsis, tagNext := false, false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, `.\"`):
			continue
		case strings.HasPrefix(line, ".SH "):
			cur = nil
			continue
		case strings.HasPrefix(line, ".SS "):
			name := strings.TrimSpace(plainRoff(line))
			if sections[name] != nil {
				t.Errorf("%s: two sections .SS %s", manPage, name)
			}
			cur = &manSection{tags: map[string]bool{}, tagWords: map[string]bool{}}
			sections[name] = cur
			inSynopsis = true
			continue
		}
		if cur == nil {
			continue
		}
		plain := plainRoff(line)
		switch {
		case line == ".TP":
			tagNext, inSynopsis = true, false
		case line == ".PP":
			inSynopsis = false
		case tagNext:
			tagNext = false
			for _, o := range options(plain) {
				cur.tags[o] = true
			}
			for _, w := range strings.FieldsFunc(plain, func(r rune) bool { return r == ' ' || r == ',' }) {
				cur.tagWords[w] = true
			}
		case inSynopsis:
			cur.synopsis += " " + plain
		}
	}
	// One space between words, none inside brackets: "relay [serve]".
	for _, sec := range sections {
		sec.synopsis = strings.Join(strings.Fields(sec.synopsis), " ")
		sec.synopsis = strings.NewReplacer("[ ", "[", " ]", "]").Replace(sec.synopsis)
	}
	return sections
}

// flagUsage matches a flag in the usage a flag.FlagSet prints.
var flagUsage = regexp.MustCompile(`(?m)^  (-[A-Za-z0-9][A-Za-z0-9-]*)`)

// definedFlags runs relay with args ending in -h and returns the flags its
// flag set printed, or nil when it printed none (the command has verbs, or
// no flags). Every command parses its flags before it acts, so -h does
// nothing but print them.
func definedFlags(t *testing.T, args ...string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	run(append(args, "-h"), strings.NewReader(""), &stdout, &stderr)
	if !strings.Contains(stderr.String(), "Usage of relay "+strings.Join(args, " ")+":") {
		return nil
	}
	flags := []string{}
	for _, m := range flagUsage.FindAllStringSubmatch(stderr.String(), -1) {
		flags = append(flags, m[1])
	}
	return flags
}

// commandVerbs returns the verbs of a command that has them (relay queue
// list|retry|delete) and the flags its usage names, from the usage it
// prints when run without arguments: the alternatives of its first line,
// and the first word of each indented line after it (relay service).
func commandVerbs(t *testing.T, name string) (verbs, usageFlags []string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	run([]string{name}, strings.NewReader(""), &stdout, &stderr)
	usage, ok := strings.CutPrefix(stderr.String(), "usage: relay "+name+" ")
	if !ok {
		return nil, nil
	}
	first, rest, _ := strings.Cut(usage, "\n")
	usageFlags = options(first)
	for _, alt := range strings.FieldsFunc(first, func(r rune) bool { return r == '|' }) {
		if f := strings.Fields(alt); len(f) > 0 && !strings.HasPrefix(f[0], "[") {
			verbs = append(verbs, f[0])
		}
	}
	for _, line := range strings.Split(rest, "\n") {
		if w, ok := strings.CutPrefix(line, "  "); ok && w != "" && w[0] != ' ' {
			if v := strings.Fields(w)[0]; !slices.Contains(verbs, v) {
				verbs = append(verbs, v)
			}
		}
	}
	return verbs, usageFlags
}

// TestManPageDocumentsEveryFlag: dist/relay.1 has a section for each
// command of relay and no other; each verb of a command is in its
// synopsis or a tag; each flag a command defines is a .TP tag in its
// section, and each option tag there is a flag the command defines. A new
// command, verb or flag fails here until the page documents it.
func TestManPageDocumentsEveryFlag(t *testing.T) {
	page := readManPage(t)
	names := map[string]bool{}
	for _, c := range commands() {
		names[c.name] = true
		sec := page[c.name]
		if sec == nil {
			t.Errorf("%s has no section .SS %s for relay %s", manPage, c.name, c.name)
			continue
		}
		if !strings.Contains(sec.synopsis, "relay "+c.name) && !(c.name == "serve" && strings.Contains(sec.synopsis, "relay [serve]")) {
			t.Errorf("%s, .SS %s: the synopsis does not show relay %s:\n%s", manPage, c.name, c.name, sec.synopsis)
		}
		if c.name == "sendmail" {
			checkSendmailFlags(t, sec)
			continue
		}
		var flags []string
		if flags = definedFlags(t, c.name); flags == nil {
			verbs, usageFlags := commandVerbs(t, c.name)
			flags = usageFlags
			for _, v := range verbs {
				if !strings.Contains(sec.synopsis, " "+v) && !sec.tagWords[v] {
					t.Errorf("%s, .SS %s: relay %s %s is in neither the synopsis nor a .TP tag", manPage, c.name, c.name, v)
				}
				// relay service's verbs act (on Windows) rather than parse
				// flags; its usage names its flags.
				if c.name != "service" {
					for _, f := range definedFlags(t, c.name, v) {
						if !slices.Contains(flags, f) {
							flags = append(flags, f)
						}
					}
				}
			}
		}
		for _, f := range flags {
			if !sec.tags[f] {
				t.Errorf("%s, .SS %s: relay %s defines %s, but no .TP tag documents it", manPage, c.name, c.name, f)
			}
		}
		for tag := range sec.tags {
			if !slices.Contains(flags, tag) {
				t.Errorf("%s, .SS %s: a .TP tag documents %s, which relay %s does not define (%v)", manPage, c.name, tag, c.name, flags)
			}
		}
	}
	for name := range page {
		if !names[name] {
			t.Errorf("%s has .SS %s, which is not a command of relay", manPage, name)
		}
	}
}

// checkSendmailFlags: relay sendmail parses its flags as sendmail(8) does,
// by hand (parseSendmailArgs). Each letter it accepts and each flag its
// usage names is a .TP tag of the section (a letter that takes an argument
// may be shown with one, as -bm or -oX), and each option tag is accepted.
func checkSendmailFlags(t *testing.T, sec *manSection) {
	t.Helper()
	accepted := func(flag string) bool {
		_, err := parseSendmailArgs([]string{flag, "m"})
		return err == nil
	}
	documented := func(flag string) bool {
		if sec.tags[flag] {
			return true
		}
		if len(flag) == 2 && strings.IndexByte("BCFLNORVXbefhopqr", flag[1]) >= 0 {
			for tag := range sec.tags {
				if strings.HasPrefix(tag, flag) {
					return true
				}
			}
		}
		return false
	}
	var flags []string
	for c := 'A'; c <= 'z'; c++ {
		if f := "-" + string(c); (c <= 'Z' || c >= 'a') && accepted(f) {
			flags = append(flags, f)
		}
	}
	for _, f := range options(sendmailUsage) {
		if !slices.Contains(flags, f) {
			flags = append(flags, f)
		}
	}
	if len(flags) < 10 {
		t.Fatalf("found only %v as relay sendmail's flags", flags)
	}
	for _, f := range flags {
		if !documented(f) {
			t.Errorf("%s, .SS sendmail: relay sendmail accepts %s, but no .TP tag documents it", manPage, f)
		}
	}
	for tag := range sec.tags {
		if !accepted(tag) {
			t.Errorf("%s, .SS sendmail: a .TP tag documents %s, which relay sendmail refuses", manPage, tag)
		}
	}
}

// TestManPageRenders: groff formats dist/relay.1 without a warning (all
// of them on), and man-db as lintian runs it (its groff-message tag) does
// too. Skips when groff or man is not installed.
func TestManPageRenders(t *testing.T) {
	ran := 0
	for _, cmd := range [][]string{
		{"groff", "-man", "-ww", "-z", manPage},
		{"man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", manPage},
	} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			t.Logf("%s is not installed (apt-get install groff-base man-db; lintian brings both)", cmd[0])
			continue
		}
		ran++
		c := exec.Command(cmd[0], cmd[1:]...)
		c.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANROFFSEQ=", "MANWIDTH=80")
		var stderr bytes.Buffer
		c.Stderr = &stderr
		if err := c.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%s: %v\n%s", strings.Join(cmd, " "), err, stderr.String())
		}
	}
	if ran == 0 {
		t.Skip("neither groff nor man is installed (apt-get install groff-base man-db)")
	}
}

// TestManPagePackaged: the Debian package installs the page, compressed,
// where man(1) finds it for /usr/bin/relay, from the file dist/release.sh
// compresses with gzip -9n (reproducible: no name, no time stamp).
func TestManPagePackaged(t *testing.T) {
	if src := nfpmContents(t)["/usr/share/man/man1/relay.1.gz"]; src != "doc/relay.1.gz" {
		t.Errorf("dist/nfpm.yaml installs /usr/share/man/man1/relay.1.gz from %q; want doc/relay.1.gz", src)
	}
	script, err := os.ReadFile("../../dist/release.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), `gzip -9n <dist/relay.1 >"$stage/doc/relay.1.gz"`) {
		t.Errorf("dist/release.sh does not stage dist/relay.1 as doc/relay.1.gz with gzip -9n")
	}
	data, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte(`.\"`)) || !bytes.Contains(data, []byte("\n.TH RELAY 1 ")) {
		t.Errorf("%s: no .TH RELAY 1 header; the package installs it in section 1", manPage)
	}
}
