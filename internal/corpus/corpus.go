// Package corpus is the message corpus that tests send through every
// transport of relay: what users really send (empty and one-line bodies,
// big attachments, UTF-8 headers and addresses, raw 8-bit bodies, lines
// that start with dots, bare LF and bare CR line endings, a very long
// line) and sizes just below and above the buffers of relay and of the
// standard library (4 KiB, 32 KiB, 64 KiB). Every message is generated
// the same way on every run.
package corpus

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
)

// Message is one message of the corpus, as a client submits it.
type Message struct {
	Name string
	From string   // envelope sender
	To   []string // envelope recipients
	// UTF8 is set when the envelope needs SMTPUTF8 (RFC 6531): MAIL FROM
	// must carry the SMTPUTF8 parameter.
	UTF8 bool
	// BodyType is the BODY= parameter a client would declare: "8BITMIME"
	// for a message with 8-bit content (RFC 6152), else "".
	BodyType string
	// Data is the message as the client hands it over, before
	// dot-stuffing, with its line endings as they are (Wire adds the final
	// CRLF a message without one needs).
	Data []byte
	// Refused is the reply (code and enhanced code, "451 4.4.2") relay
	// gives today at the end of DATA instead of accepting the message, or
	// "" when the message must arrive as Want says.
	Refused string
}

// Wire is what the client writes after DATA's 354: Data dot-stuffed (RFC
// 5321 §4.5.2, at the start of every CRLF line), a CRLF if Data does not
// end with one, and the final ".\r\n".
func (m *Message) Wire() []byte {
	var b bytes.Buffer
	b.Grow(len(m.Data) + len(m.Data)/64 + 8)
	lineStart := true
	data := m.Data
	for len(data) > 0 {
		if lineStart && data[0] == '.' {
			b.WriteByte('.')
		}
		i := bytes.Index(data, []byte("\r\n"))
		if i < 0 {
			b.Write(data)
			break
		}
		b.Write(data[:i+2])
		data = data[i+2:]
		lineStart = true
	}
	if !bytes.HasSuffix(m.Data, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// Want is what an upstream must receive after relay's Received header:
// Data with the final CRLF Wire adds and every line ending (bare LF, bare
// CR) made CRLF.
func (m *Message) Want() []byte {
	d := m.Data
	if !bytes.HasSuffix(d, []byte("\r\n")) {
		d = append(append([]byte(nil), d...), '\r', '\n')
	}
	return CRLF(d)
}

// Fold is what an SMTP upstream receives of b (CRLF line endings) from
// relay, which breaks every line longer than 998 octets by inserting
// CRLF SP, as Postfix does (smtp_line_length_limit); computed one octet at
// a time, independently of relay's own folding.
func Fold(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/256)
	col := 0
	for i, c := range b {
		eol := c == '\n' || (c == '\r' && i+1 < len(b) && b[i+1] == '\n')
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

// CRLF makes every line ending of b (CRLF, bare LF, bare CR) a CRLF, as
// relay does to what it receives.
func CRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case b[i] == '\r' || b[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// LF makes every CRLF of b an LF: what a Maildir stores of a message with
// CRLF line endings.
func LF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

// AfterReceived returns b without its first header field if that is a
// Received field (with its continuation lines; CRLF or LF line endings),
// and whether it was.
func AfterReceived(b []byte) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte("Received:")) {
		return b, false
	}
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, true
		}
		b = b[i+1:]
		if len(b) == 0 || (b[0] != ' ' && b[0] != '\t') {
			return b, true
		}
	}
}

// All returns the corpus; the slice is shared, its messages must not be
// changed.
func All() []*Message { return all() }

var all = sync.OnceValue(build)

const (
	from = "alarms@plant.example.com"
	to   = "ops@example.com"
)

func header(subject string, extra ...string) string {
	h := "From: Alarms <" + from + ">\r\nTo: Ops <" + to + ">\r\nSubject: " + subject + "\r\nDate: Wed, 25 Nov 2026 08:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@plant.example.com>\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h + "\r\n"
}

// text returns n bytes of printable lines of 76 characters and CRLF.
func text(rng *rand.Rand, n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ,;:-"
	b := make([]byte, n)
	col := 0
	for i := 0; i < n; i++ {
		if col == 76 && i+1 < n {
			b[i], b[i+1] = '\r', '\n'
			i++
			col = 0
			continue
		}
		b[i] = alphabet[rng.IntN(len(alphabet))]
		col++
	}
	return b
}

// sized is a text message of exactly n bytes.
func sized(rng *rand.Rand, name string, n int) *Message {
	h := header(name)
	return &Message{Name: name, From: from, To: []string{to}, Data: append([]byte(h), text(rng, n-len(h))...)}
}

func build() []*Message {
	rng := rand.New(rand.NewPCG(25, 11))
	var ms []*Message
	add := func(m *Message) {
		if m.From == "" {
			m.From = from
		}
		if m.To == nil {
			m.To = []string{to}
		}
		ms = append(ms, m)
	}
	add(&Message{Name: "empty body", Data: []byte(header("empty body"))})
	add(&Message{Name: "one line", Data: []byte(header("one line") + "Pump 3 stopped.\r\n")})
	add(&Message{Name: "40 KB", Data: append([]byte(header("40 KB")), text(rng, 40_000)...)})
	add(&Message{Name: "1 MB", Data: append([]byte(header("1 MB")), text(rng, 1_000_000)...)})
	add(attachment(rng, "5 MB attachment", 5<<20))
	add(&Message{Name: "UTF-8 headers and SMTPUTF8 address", To: []string{"用户@例子.广告", to}, UTF8: true, BodyType: "8BITMIME",
		Data: []byte("From: =?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("Pumpenstörung")) + "?= <" + from + ">\r\n" +
			"To: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <用户@例子.广告>\r\n" +
			"Subject: =?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("Störung Pumpe 3 — 温度过高")) + "?=\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"Grüße aus der Leitwarte. 温度过高。\r\n")})
	add(eightBit(rng))
	add(&Message{Name: "dots", Data: []byte(header("dots") + ".\r\n..\r\n...\r\n.leading dot\r\n..two dots\r\n. space\r\nend.\r\n.")})
	add(&Message{Name: "LF line endings", Data: []byte(strings.ReplaceAll(header("LF line endings"), "\r\n", "\n") + "line 1\nline 2\n\nline 4\nlast line without an ending")})
	add(&Message{Name: "CR line endings", Data: []byte(strings.ReplaceAll(header("CR line endings"), "\r\n", "\r") + "line 1\rline 2\r\rline 4\rlast line without an ending")})
	// relay takes it whole (its line limits bound message lines only by
	// max_message_bytes) and folds it on the way upstream: see Fold.
	add(&Message{Name: "5000-character line", Data: append([]byte(header("5000-character line")), append(bytes.Repeat([]byte("x"), 5000), "\r\nafter the long line\r\n"...)...)})
	for _, size := range []int{4 << 10, 32 << 10, 64 << 10} {
		add(sized(rng, fmt.Sprintf("%d bytes", size-1), size-1))
		add(sized(rng, fmt.Sprintf("%d bytes", size+1), size+1))
	}
	return ms
}

// attachment is a multipart message of about size bytes whose second
// part is random binary data in base64 (RFC 2045 §6.8: lines of 76).
func attachment(rng *rand.Rand, name string, size int) *Message {
	raw := make([]byte, size*3/4)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var b strings.Builder
	b.WriteString(header(name, "MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="=_corpus_boundary"`))
	b.WriteString("--=_corpus_boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe daily report is attached.\r\n")
	b.WriteString("--=_corpus_boundary\r\nContent-Type: application/octet-stream; name=\"report.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.bin\"\r\n\r\n")
	for len(enc) > 0 {
		n := min(76, len(enc))
		b.WriteString(enc[:n])
		b.WriteString("\r\n")
		enc = enc[n:]
	}
	b.WriteString("--=_corpus_boundary--\r\n")
	return &Message{Name: name, Data: []byte(b.String())}
}

// eightBit is a message whose body holds every byte value but CR, LF and
// NUL, raw (Content-Transfer-Encoding: 8bit).
func eightBit(rng *rand.Rand) *Message {
	h := header("raw 8-bit body", "MIME-Version: 1.0", "Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: 8bit")
	var body []byte
	for line := 0; line < 200; line++ {
		for i := 0; i < 70; i++ {
			c := byte(1 + rng.IntN(255))
			if c == '\r' || c == '\n' {
				c = 0xe4
			}
			body = append(body, c)
		}
		body = append(body, '\r', '\n')
	}
	return &Message{Name: "raw 8-bit body", BodyType: "8BITMIME", Data: append([]byte(h), body...)}
}
