package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// EmbeddedName is Config.File for the built-in default configuration.
const EmbeddedName = "(embedded default)"

//go:embed default.toml
var embeddedDefault string

// Embedded returns the built-in default: 127.0.0.1:2525, loopback clients
// without AUTH, every message into the maildir ./relay-data/maildir.
func Embedded() *Config {
	c, err := Parse(EmbeddedName, []byte(embeddedDefault))
	if err != nil {
		panic("embedded default configuration: " + err.Error())
	}
	return c
}

// Load reads, parses and resolves the configuration file at path: what
// `relay serve` and `relay check` use. A returned error is an *Error listing
// every problem, each with the file and line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []Problem{{File: path, Msg: fmt.Sprintf("cannot read the configuration: %v", errors.Unwrap(err))}}}
	}
	c, l := parse(path, data)
	if c == nil {
		return nil, l.err()
	}
	// Resolve even a document with mistakes, so that one run names them
	// all; the mistakes of the two steps are merged in the order of lines.
	var rerr *Error
	if errors.As(c.Resolve(), &rerr) {
		l.problems = append(l.problems, rerr.Problems...)
	}
	if len(l.problems) > 0 {
		return nil, l.err()
	}
	c.Warnings = append(l.warnings, c.Warnings...)
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o004 != 0 && c.hasInlineSecret() {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: holds a password or client secret and every user on this machine may read it (mode %04o); run chmod o-r %s, or move the secret to a *_file", path, info.Mode().Perm(), path))
	}
	return c, nil
}

// rawFile is the document as decoded; arrays of tables are decoded element
// by element onto their defaults, because BurntSushi/toml only sets the
// keys a document has.
type rawFile struct {
	Server        Server           `toml:"server"`
	Queue         Queue            `toml:"queue"`
	Admin         Admin            `toml:"admin"`
	Users         []toml.Primitive `toml:"users"`
	Routes        []toml.Primitive `toml:"routes"`
	Profiles      []toml.Primitive `toml:"profiles"`
	OAuth2Clients []toml.Primitive `toml:"oauth2_clients"`
}

// loader carries one file through decoding and validation, collecting
// problems as it goes (mox's addErrorf style).
type loader struct {
	failed   []string // array elements that did not decode: their later keys stay undecoded
	file     string
	ix       *lineIndex
	problems []Problem
	warnings []string
}

func (l *loader) addf(key string, format string, args ...any) {
	l.problems = append(l.problems, Problem{File: l.file, Line: l.ix.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

var lastKeyRe = regexp.MustCompile(`last key "([^"]*)"`)
var lineRe = regexp.MustCompile(`line (\d+)`)

// decodeErr turns a BurntSushi/toml error into a problem. prefix is the
// indexed path of the array element being decoded, if any.
func (l *loader) decodeErr(err error, prefix string) {
	if prefix != "" {
		l.failed = append(l.failed, prefix)
	}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		key := pe.LastKey
		if prefix != "" {
			key = prefix + strings.TrimPrefix(key, unindex(prefix))
		}
		line := pe.Line
		if prefix == "" && line > 0 {
			key = l.ix.indexed(key, line)
		}
		if prefix != "" || line == 0 {
			if il := l.ix.line(key); il > 0 {
				line = il
			}
		}
		msg := pe.Message
		if key != "" {
			msg = strings.TrimPrefix(msg, "toml: ")
		}
		l.problems = append(l.problems, Problem{File: l.file, Line: line, Key: key, Msg: msg})
		return
	}
	msg := err.Error()
	key := ""
	if m := lastKeyRe.FindStringSubmatch(msg); m != nil {
		key = m[1]
		if prefix != "" {
			key = prefix + strings.TrimPrefix(key, unindex(prefix))
		}
	}
	line := l.ix.line(key)
	if line == 0 {
		if m := lineRe.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			if prefix == "" {
				key = l.ix.indexed(key, line)
			}
		}
	}
	if i := strings.Index(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	msg = strings.TrimPrefix(msg, "toml: ")
	l.problems = append(l.problems, Problem{File: l.file, Line: line, Key: key, Msg: msg})
}

func unindex(path string) string { return indexSuffix.ReplaceAllString(path, "") }

// Parse decodes and validates a configuration document; name is used in
// error messages as its file name. It reads nothing but data: secrets in
// files or the environment, certificates and CA files stay unread until
// Resolve.
func Parse(name string, data []byte) (*Config, error) {
	c, l := parse(name, data)
	if c == nil || len(l.problems) > 0 {
		return nil, l.err()
	}
	c.Warnings = append(c.Warnings, l.warnings...)
	return c, nil
}

// DecodeServer decodes only the [server] table of a document, onto its
// defaults: what a client of a running relay, such as relay sendmail, needs
// to find it. The rest of the document is neither decoded nor validated,
// and nothing outside it is read; a document that is not TOML is an *Error
// naming FILE:LINE.
func DecodeServer(name string, data []byte) (Server, error) {
	doc := struct {
		Server Server `toml:"server"`
	}{Server: defaultServer()}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		l := &loader{file: name, ix: newLineIndex(string(data))}
		l.decodeErr(err, "")
		return Server{}, l.err()
	}
	return doc.Server, nil
}

// parse decodes and validates data. It returns a nil *Config when the
// document does not decode; the loader holds the problems and warnings.
func parse(name string, data []byte) (*Config, *loader) {
	l := &loader{file: name, ix: newLineIndex(string(data))}
	raw := rawFile{Server: defaultServer(), Queue: defaultQueue(), Admin: defaultAdmin()}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		l.decodeErr(err, "")
		return nil, l
	}
	c := &Config{File: name, Server: raw.Server, Queue: raw.Queue, Admin: raw.Admin, lines: l.ix}

	for i, prim := range raw.Profiles {
		p := defaultProfile()
		prefix := fmt.Sprintf("profiles[%d]", i)
		if err := md.PrimitiveDecode(prim, p); err != nil {
			l.decodeErr(err, prefix)
			continue
		}
		p.Line = l.ix.line(prefix)
		c.Profiles = append(c.Profiles, p)
	}
	for i, prim := range raw.Users {
		u := &User{}
		prefix := fmt.Sprintf("users[%d]", i)
		if err := md.PrimitiveDecode(prim, u); err != nil {
			l.decodeErr(err, prefix)
			continue
		}
		u.Line = l.ix.line(prefix)
		c.Users = append(c.Users, u)
	}
	for i, prim := range raw.Routes {
		r := &Route{}
		prefix := fmt.Sprintf("routes[%d]", i)
		if err := md.PrimitiveDecode(prim, r); err != nil {
			l.decodeErr(err, prefix)
			continue
		}
		r.Line = l.ix.line(prefix)
		c.Routes = append(c.Routes, r)
	}
	for i, prim := range raw.OAuth2Clients {
		oc := &OAuth2Client{}
		prefix := fmt.Sprintf("oauth2_clients[%d]", i)
		if err := md.PrimitiveDecode(prim, oc); err != nil {
			l.decodeErr(err, prefix)
			continue
		}
		oc.Line = l.ix.line(prefix)
		c.OAuth2Clients = append(c.OAuth2Clients, oc)
	}
	// Undecoded lists a key of an array table once per element that has
	// it, and the keys inside an unknown table after the table itself;
	// unknownKey reports every place of a key, and a table is enough.
	seen := map[string]bool{}
	for _, key := range md.Undecoded() {
		k := key.String()
		inUnknown := len(key) > 1 && seen[key[:len(key)-1].String()]
		if !seen[k] && !inUnknown {
			l.unknownKey(key)
		}
		seen[k] = true
	}
	if len(l.problems) > 0 {
		return nil, l
	}
	l.validate(c)
	return c, l
}

// err returns the problems found so far, in the order of their lines.
func (l *loader) err() *Error {
	sort.SliceStable(l.problems, func(i, j int) bool { return l.problems[i].Line < l.problems[j].Line })
	return &Error{Problems: l.problems}
}

// unknownKey reports a key relay does not know, at each place it occurs.
func (l *loader) unknownKey(key toml.Key) {
	k := key.String()
	// The index keeps keys unquoted; key.String() quotes a part such as
	// "délai" or "smtp timeout".
	where := l.ix.unindexed(strings.Join(key, "."))
	msg := "unknown key"
	if len(key) > 1 {
		msg = fmt.Sprintf("unknown key %q in [%s]", key[len(key)-1], strings.Join(key[:len(key)-1], "."))
	}
	if len(where) == 0 {
		l.problems = append(l.problems, Problem{File: l.file, Key: k, Msg: msg})
		return
	}
	for _, w := range where {
		if l.inFailed(w.path) {
			continue
		}
		l.problems = append(l.problems, Problem{File: l.file, Line: w.line, Key: w.path, Msg: msg})
	}
}

func (l *loader) inFailed(path string) bool {
	for _, f := range l.failed {
		if strings.HasPrefix(path, f+".") {
			return true
		}
	}
	return false
}

// Profile returns the profile named name, or nil.
func (c *Config) Profile(name string) *Profile {
	for _, p := range c.Profiles {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// OAuth2ClientNamed returns the OAuth2 client named name, or nil.
func (c *Config) OAuth2ClientNamed(name string) *OAuth2Client {
	for _, oc := range c.OAuth2Clients {
		if oc.Name == name {
			return oc
		}
	}
	return nil
}

// hasInlineSecret reports whether the file itself holds a password or
// client secret (a bcrypt hash is not a secret worth a warning).
func (c *Config) hasInlineSecret() bool {
	for _, p := range c.Profiles {
		if p.inlinePassword {
			return true
		}
	}
	for _, oc := range c.OAuth2Clients {
		if oc.inlineSecret {
			return true
		}
	}
	return false
}
