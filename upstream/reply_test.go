package upstream

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		in    string
		code  int
		ec    smtp.EnhancedCode
		lines []string
		bad   bool
	}{
		{in: "250 ok\r\n", code: 250, ec: smtp.NoEnhancedCode, lines: []string{"ok"}},
		{in: "535 5.7.8 Authentication credentials invalid\r\n", code: 535, ec: smtp.EnhancedCode{5, 7, 8}, lines: []string{"Authentication credentials invalid"}},
		{in: "250-mx.example.com\r\n250-PIPELINING\r\n250 CHUNKING\r\n", code: 250, ec: smtp.NoEnhancedCode, lines: []string{"mx.example.com", "PIPELINING", "CHUNKING"}},
		{in: "550-5.7.708 Service unavailable.\r\n550 5.7.708 Access denied\r\n", code: 550, ec: smtp.EnhancedCode{5, 7, 708}, lines: []string{"Service unavailable.", "Access denied"}},
		{in: "354\r\n", code: 354, ec: smtp.NoEnhancedCode, lines: []string{""}},
		{in: "250 ok\n", code: 250, ec: smtp.NoEnhancedCode, lines: []string{"ok"}},
		// RFC 2034 §4: the class must match the code.
		{in: "451 5.7.1 odd\r\n", code: 451, ec: smtp.NoEnhancedCode, lines: []string{"5.7.1 odd"}},
		{in: "250 2.1.0x ok\r\n", code: 250, ec: smtp.NoEnhancedCode, lines: []string{"2.1.0x ok"}},
		{in: "250-a\r\n251 b\r\n", bad: true},
		{in: "25 short\r\n", bad: true},
		{in: "650 out of range\r\n", bad: true},
		{in: "250_x\r\n", bad: true},
		{in: "250-cut", bad: true},
		{in: "250 " + strings.Repeat("x", maxReplyLine+10) + "\r\n", bad: true},
		{in: strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n", bad: true},
	}
	for _, tt := range tests {
		rep, err := readReply(bufio.NewReader(strings.NewReader(tt.in)), nil)
		if tt.bad {
			if err == nil {
				t.Errorf("readReply(%q) = code %d, %d lines; want an error", clip(tt.in), rep.code, len(rep.lines))
			}
			continue
		}
		if err != nil || rep.code != tt.code || rep.enhanced != tt.ec || strings.Join(rep.lines, "|") != strings.Join(tt.lines, "|") {
			t.Errorf("readReply(%q) = %+v, %v; want %d %v %q", tt.in, rep, err, tt.code, tt.ec, tt.lines)
		}
	}
}

// FuzzReadReply: any input gives a reply with a code from 200 to 599 or
// an error, never a panic, and a reply's lines hold no line breaks.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "535 5.7.8 no\r\n", "334 \r\n", "2", "250-\n250 \n", "421 4.4.2 bye"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(strings.NewReader(string(in)), 16)
		for range 4 {
			rep, err := readReply(r, nil)
			if err != nil {
				if !errors.Is(err, errMalformedReply) && !errors.Is(err, io.EOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if rep.code < 200 || rep.code > 599 || len(rep.lines) == 0 || len(rep.lines) > maxReplyLines {
				t.Fatalf("reply %+v out of bounds", rep)
			}
			for _, l := range rep.lines {
				if strings.ContainsAny(l, "\n") || len(l) > maxReplyLine {
					t.Fatalf("reply line %q", l)
				}
			}
			if ec := rep.enhanced; ec != smtp.NoEnhancedCode && ec[0] != rep.code/100 {
				t.Fatalf("enhanced code %v in a %d reply", ec, rep.code)
			}
		}
	})
}
