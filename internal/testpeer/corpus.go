package testpeer

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
)

// CorpusMessage is one message of the test corpus, with CRLF line endings
// and a Subject of its own.
type CorpusMessage struct {
	Name string
	Data []byte
}

// Corpus returns messages as users send them: sizes on either side of
// buffer boundaries (4 KiB, 32 KiB, 64 KiB, 1 MB), a 5 MB binary
// attachment, 8-bit and UTF-8 text, lines of dots, and a 5,000-character
// line. Its content is the same on every call.
func Corpus() []CorpusMessage {
	rng := rand.New(rand.NewPCG(13, 13))
	header := func(subject string) string {
		return "From: app@example.com\r\nTo: ops@example.com\r\nSubject: " + subject + "\r\nMIME-Version: 1.0\r\n"
	}
	text := func(subject string, size int) []byte {
		var b bytes.Buffer
		b.WriteString(header(subject) + "Content-Type: text/plain; charset=us-ascii\r\n\r\n")
		for i := 0; b.Len() < size; i++ {
			line := strings.Repeat(string(rune('a'+i%26)), 1+rng.IntN(76))
			b.WriteString(line + "\r\n")
		}
		return fitTo(b.Bytes(), size)
	}
	binary := func(size int) []byte {
		raw := make([]byte, size)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		var b strings.Builder
		b.WriteString(header("binary") + "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
		return []byte(b.String())
	}
	return []CorpusMessage{
		{"4KiB-1", text("4k-1", 4095)},
		{"4KiB+1", text("4k+1", 4097)},
		{"32KiB", text("32k", 32<<10)},
		{"64KiB+1", text("64k", 64<<10+1)},
		{"1MB", text("1m", 1<<20)},
		{"5MB-binary", binary(5 << 20)},
		{"8bit", []byte(header("=?utf-8?q?=C3=A9t=C3=A9?=") + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"Grüße aus Köln, été, 日本語, \xe9t\xe9 in Latin-1\r\n\r\n")},
		{"dots", []byte(header("dots") + "\r\n.\r\n..\r\n.leading\r\n. \r\nmiddle . dot\r\n.\r\n")},
		{"5000-char-line", []byte(header("long line") + "\r\n" + strings.Repeat("0123456789", 500) + "\r\nafter\r\n")},
		{"long-header", []byte("From: app@example.com\r\nTo: ops@example.com\r\nSubject: long header\r\nX-Long: " + strings.Repeat("h", 1500) + "\r\n\r\nbody\r\n")},
	}
}

// fitTo cuts or pads text lines to exactly size bytes, ending in CRLF.
func fitTo(b []byte, size int) []byte {
	if len(b) > size-2 {
		b = b[:size-2]
	}
	for len(b) < size-2 {
		b = append(b, 'z')
	}
	if b[len(b)-1] == '\r' {
		b[len(b)-1] = 'z'
	}
	return append(b, '\r', '\n')
}

// Fold is what a message looks like after a client folds its lines
// longer than 998 octets with CRLF SP (Postfix's smtp_line_length_limit),
// computed one octet at a time.
func Fold(msg []byte) []byte {
	var out []byte
	col := 0
	for i, c := range msg {
		eol := c == '\n' || (c == '\r' && i+1 < len(msg) && msg[i+1] == '\n')
		if !eol && col == 998 {
			out = append(out, '\r', '\n', ' ')
			col = 1
		}
		out = append(out, c)
		switch {
		case c == '\n':
			col = 0
		case !eol:
			col++
		}
	}
	return out
}
