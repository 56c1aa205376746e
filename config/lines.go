package config

import (
	"regexp"
	"strconv"
	"strings"
)

// lineIndex maps key paths of a TOML document to the lines they are on, so
// that validation errors can name a line. BurntSushi/toml keeps positions
// private and loses the index of [[array]] tables, so relay reads the
// document's structure once more itself. It understands what configuration
// files use: tables, arrays of tables, sub-tables of the latest array
// element, dotted and quoted keys, multi-line strings, arrays and inline
// tables.
type lineIndex struct {
	lines map[string]int // "profiles[1].use_ssl" → 14; "profiles[1]" → its header
	keys  []indexedKey   // in document order
}

type indexedKey struct {
	path string // with array indices: profiles[1].port
	line int
}

var (
	arrayHeader = regexp.MustCompile(`^\[\[\s*([^\]]+?)\s*\]\]`)
	tableHeader = regexp.MustCompile(`^\[\s*([^\]]+?)\s*\]`)
	keyLine     = regexp.MustCompile(`^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=(.*)$`)
	indexSuffix = regexp.MustCompile(`\[\d+\]`)
)

func newLineIndex(doc string) *lineIndex {
	// BurntSushi/toml skips a byte order mark, as Windows editors write.
	doc = strings.TrimPrefix(doc, "\ufeff")
	ix := &lineIndex{lines: make(map[string]int)}
	counts := make(map[string]int) // array table → elements so far
	current := ""
	var closer string // a multi-line string, array or inline table is open until this
	depth := 0        // of brackets and braces, while closer is closeBrackets
	for n, line := range strings.Split(doc, "\n") {
		lineNo := n + 1
		text := strings.TrimSpace(line)
		if closer != "" {
			if closer == closeBrackets {
				depth += bracketDepth(text)
				if depth <= 0 {
					closer = ""
				}
			} else if closesString(text, closer) {
				closer = ""
			}
			continue
		}
		if text == "" || text[0] == '#' {
			continue
		}
		if m := arrayHeader.FindStringSubmatch(text); m != nil {
			name := normalizeKey(m[1])
			idx := counts[name]
			counts[name]++
			current = name + "[" + strconv.Itoa(idx) + "]"
			ix.add(current, lineNo)
			continue
		}
		if m := tableHeader.FindStringSubmatch(text); m != nil {
			name := normalizeKey(m[1])
			current = ix.resolveTable(name, counts)
			ix.add(current, lineNo)
			continue
		}
		m := keyLine.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		// A dotted key also defines its tables: a.b.c = 1 makes a and
		// a.b, which validation may name.
		path := current
		for _, part := range splitDotted(m[1]) {
			if path != "" {
				path += "."
			}
			path += normalizeKey(part)
			ix.add(path, lineNo)
		}
		value := strings.TrimSpace(m[2])
		switch {
		case strings.HasPrefix(value, `"""`) && !closesString(value[3:], `"""`):
			closer = `"""`
		case strings.HasPrefix(value, `'''`) && !closesString(value[3:], `'''`):
			closer = `'''`
		case strings.HasPrefix(value, "["), strings.HasPrefix(value, "{"):
			if depth = bracketDepth(value); depth > 0 {
				closer = closeBrackets
			}
		}
	}
	return ix
}

// resolveTable turns a [a.b] header into a path: a sub-table of an array
// table belongs to that array's latest element.
func (ix *lineIndex) resolveTable(name string, counts map[string]int) string {
	parts := strings.Split(name, ".")
	for i := len(parts) - 1; i > 0; i-- {
		prefix := strings.Join(parts[:i], ".")
		if n := counts[prefix]; n > 0 {
			return prefix + "[" + strconv.Itoa(n-1) + "]." + strings.Join(parts[i:], ".")
		}
	}
	return name
}

func (ix *lineIndex) add(path string, line int) {
	if _, ok := ix.lines[path]; !ok {
		ix.lines[path] = line
	}
	ix.keys = append(ix.keys, indexedKey{path, line})
}

// line returns the line of path, or of its closest enclosing table, or 0.
func (ix *lineIndex) line(path string) int {
	for path != "" {
		if l, ok := ix.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// unindexed lists the indexed paths and lines whose path, without array
// indices, is key (as BurntSushi/toml reports undecoded keys).
func (ix *lineIndex) unindexed(key string) []indexedKey {
	var out []indexedKey
	for _, k := range ix.keys {
		if indexSuffix.ReplaceAllString(k.path, "") == key {
			out = append(out, k)
		}
	}
	return out
}

// indexed returns the indexed path of key (a path without array indices,
// as BurntSushi/toml reports it) at or last before line, or key itself.
func (ix *lineIndex) indexed(key string, line int) string {
	found := key
	for _, k := range ix.keys {
		if k.line > line {
			break
		}
		if indexSuffix.ReplaceAllString(k.path, "") == key {
			found = k.path
		}
	}
	return found
}

// normalizeKey removes quotes and spaces around the parts of a dotted key.
func normalizeKey(k string) string {
	parts := splitDotted(k)
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

// splitDotted splits a dotted key on the dots outside quotes.
func splitDotted(k string) []string {
	var parts []string
	var quote byte
	start := 0
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			parts = append(parts, k[start:i])
			start = i + 1
		}
	}
	return append(parts, k[start:])
}

// closeBrackets marks an open multi-line array or inline table (TOML 1.1
// lets inline tables span lines).
const closeBrackets = "]}"

// bracketDepth counts [ and { minus ] and } outside strings and comments.
func bracketDepth(s string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return depth
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		}
	}
	return depth
}

// closesString reports whether s holds delim, the end of a multi-line
// string; in a basic string (""") a backslash escapes the next character.
func closesString(s, delim string) bool {
	for i := 0; i < len(s); i++ {
		if delim == `"""` && s[i] == '\\' {
			i++
			continue
		}
		if strings.HasPrefix(s[i:], delim) {
			return true
		}
	}
	return false
}
