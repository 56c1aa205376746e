package config_test

import (
	"testing"

	"github.com/relaymail/relay/config"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		addr    string
		want    bool
	}{
		// Exact addresses, without regard to case.
		{"alarms@plant.example.com", "alarms@plant.example.com", true},
		{"alarms@plant.example.com", "Alarms@Plant.EXAMPLE.com", true},
		{"ALARMS@plant.example.com", "alarms@plant.example.com", true},
		{"alarms@plant.example.com", "alarms@plant.example.co", false},
		{"alarms@plant.example.com", "xalarms@plant.example.com", false},
		{"alarms@plant.example.com", "alarms@plant.example.com.evil", false},
		{"alarms@plant.example.com", "", false},

		// A whole domain.
		{"*@plant.example.com", "alarms@plant.example.com", true},
		{"*@plant.example.com", "ALARMS@PLANT.EXAMPLE.COM", true},
		{"*@plant.example.com", "@plant.example.com", true},
		{"*@plant.example.com", "alarms@sub.plant.example.com", false},
		{"*@plant.example.com", "alarms@plant.example.com.evil", false},
		{"*@plant.example.com", "alarms@evilplant.example.com", false},
		{"*@*.example.com", "alarms@plant.example.com", true},
		{"*@*.example.com", "alarms@example.com", false},

		// Anything, even the null sender.
		{"*", "alarms@plant.example.com", true},
		{"*", "", true},
		{"**", "x", true},

		// Several stars.
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "abbc", true},
		{"a*b*c", "acbc", true},
		{"a*b*c", "ac", false},
		{"a*b*c", "acb", false},
		{"a*b*c", "abcx", false},
		{"a*b*c", "xabc", false},
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"alarms*@*", "alarms-7@plant.example.com", true},
		{"alarms*@*", "pump@plant.example.com", false},
	}
	for _, tt := range tests {
		p, err := config.ParsePattern(tt.pattern)
		if err != nil {
			t.Errorf("ParsePattern(%q) = %v; want no error", tt.pattern, err)
			continue
		}
		if got := p.Match(tt.addr); got != tt.want {
			t.Errorf("ParsePattern(%q).Match(%q) = %v; want %v", tt.pattern, tt.addr, got, tt.want)
		}
		if p.String() != tt.pattern {
			t.Errorf("ParsePattern(%q).String() = %q; want %q", tt.pattern, p.String(), tt.pattern)
		}
	}
}

func TestParsePatternInvalid(t *testing.T) {
	for _, s := range []string{"", "alarms @plant.example.com", "<alarms@plant.example.com>", "a\tb", "a\x00b", "alarms@plant.example.com\r\n"} {
		if p, err := config.ParsePattern(s); err == nil {
			t.Errorf("ParsePattern(%q) = %v, nil; want an error", s, p)
		}
	}
}

func TestPatternZeroMatchesNothing(t *testing.T) {
	var p config.Pattern
	for _, addr := range []string{"", "a@b"} {
		if p.Match(addr) {
			t.Errorf("Pattern{}.Match(%q) = true; want false", addr)
		}
	}
}
