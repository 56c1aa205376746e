package spool

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// Reply is the outcome of the last delivery attempt for one recipient: the
// upstream's reply code and enhanced status code when it answered, and a
// text for people.
type Reply struct {
	// Code is the SMTP reply code (RFC 5321 §4.2.3), such as 550; 0 when
	// no server answered (a network, TLS or token failure) or the code is
	// not known.
	Code int
	// Enhanced is the enhanced status code (RFC 3463), such as "5.1.1",
	// or "".
	Enhanced string
	// Text says what happened, as queue listings and bounces show it: the
	// upstream's reply with the step it answered, or the local error.
	Text string
}

// IsZero reports whether r holds no outcome yet.
func (r Reply) IsZero() bool { return r == Reply{} }

// replyFile is the JSON form of a Reply in format version 3: an object.
// Version 2 stored the text alone, as a string; UnmarshalJSON reads both.
type replyFile struct {
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text,omitempty"`
}

func fileReply(r Reply) *replyFile {
	if r.IsZero() {
		return nil
	}
	f := replyFile(r)
	return &f
}

// UnmarshalJSON reads a reply of format version 3, or the string of
// version 2, converted by version2Reply.
func (f *replyFile) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var text string
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
		*f = replyFile(version2Reply(text))
		return nil
	}
	type plain replyFile // without this method
	return json.Unmarshal(b, (*plain)(f))
}

// version2Codes finds the reply code and enhanced status code that a reply
// stored by format version 2 holds, such as "550 5.1.1" in
// "upstream mx:25: RCPT TO: 550 5.1.1 User unknown".
var version2Codes = regexp.MustCompile(`\b([245]\d\d) ([245]\.\d{1,3}\.\d{1,3})\b`)

// version2Reply converts the reply string of format version 2. Its codes
// are taken from the text where that relay's bounces found them, so that
// mail queued before an upgrade bounces with the same status: a reply
// without an enhanced code keeps code 0, and one that expired without any
// gets X.4.7, delivery time expired (RFC 3463).
func version2Reply(text string) Reply {
	r := Reply{Text: text}
	if m := version2Codes.FindStringSubmatch(text); m != nil {
		r.Code, _ = strconv.Atoi(m[1])
		r.Enhanced = m[2]
	} else if strings.HasPrefix(text, "gave up after ") {
		r.Enhanced = "4.4.7"
	}
	return r
}

// recipientJSON is a Recipient in relay's JSON API (relay queue list
// -json, /api/queue): the reply's text under "Reply", as before replies
// had codes, and the codes beside it.
type recipientJSON struct {
	Addr         string
	State        RcptState
	Reply        string
	Code         int    `json:",omitempty"`
	EnhancedCode string `json:",omitempty"`
}

// MarshalJSON encodes r for relay's JSON API.
func (r Recipient) MarshalJSON() ([]byte, error) {
	return json.Marshal(recipientJSON{Addr: r.Addr, State: r.State, Reply: r.Reply.Text, Code: r.Reply.Code, EnhancedCode: r.Reply.Enhanced})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (r *Recipient) UnmarshalJSON(b []byte) error {
	var j recipientJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Recipient{Addr: j.Addr, State: j.State, Reply: Reply{Code: j.Code, Enhanced: j.EnhancedCode, Text: j.Reply}}
	return nil
}
