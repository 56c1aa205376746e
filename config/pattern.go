package config

import (
	"errors"
	"strings"
	"unicode"
)

// Pattern matches envelope addresses: "alarms@plant.example.com",
// "*@plant.example.com" or "*". A "*" matches any run of characters,
// including none; everything else matches itself without regard to case.
type Pattern struct {
	text  string
	parts []string // lower-cased text split at each "*"
}

// ParsePattern compiles an address pattern.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, errors.New("empty address pattern")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '<' || r == '>' {
			return Pattern{}, errors.New("address pattern contains a space, a control character or angle brackets")
		}
	}
	return Pattern{text: s, parts: strings.Split(strings.ToLower(s), "*")}, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.text }

// Match reports whether addr matches the pattern.
func (p Pattern) Match(addr string) bool {
	if len(p.parts) == 0 {
		return false
	}
	s := strings.ToLower(addr)
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(p.parts) == 1 {
		return s == first
	}
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for _, mid := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, last)
}
