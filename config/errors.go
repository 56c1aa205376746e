package config

import (
	"fmt"
	"strings"
)

// Problem is one mistake in a configuration file.
type Problem struct {
	File string
	Line int    // 0 when the mistake has no line, such as a missing table
	Key  string // key path such as "profiles[1].use_ssl"; may be empty
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error lists every problem found in a configuration file, one per line,
// each as FILE:LINE: KEY: message.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

type errDurationType struct{ v any }

func (e errDurationType) Error() string {
	return fmt.Sprintf("want a duration string with a unit, such as \"10s\" or \"2m\"; got %v", e.v)
}

type errDurationSyntax struct{ s string }

func (e errDurationSyntax) Error() string {
	return fmt.Sprintf("%q is not a duration; write a number with a unit, such as \"10s\", \"2m\" or \"1h\"", e.s)
}
