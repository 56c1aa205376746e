package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// FormatVersion is the spool format this package writes: one file per
// message, ID.mail, that starts with an envelope line, and ID.json once the
// envelope changed. Version 3 stores each recipient's reply as its code,
// enhanced code and text; version 2 stored it as one string, which this
// package still reads (see Reply).
const FormatVersion = 3

// oldestVersion is the oldest format this package reads.
const oldestVersion = 2

// Envelope is everything relay knows about a queued message besides its
// body: where it goes, through which profile, and how delivery has gone so
// far.
type Envelope struct {
	ID         string      // set by Commit
	Profile    string      // the email profile that delivers the message
	From       string      // envelope sender (MAIL FROM); "" is the null sender
	User       string      // the local login that submitted the message, or ""
	Recipients []Recipient // at least one
	// BodyType is BODY= as the client declared it at MAIL: "", "7BIT" or
	// "8BITMIME" (RFC 6152). Envelopes written before it existed load as "".
	BodyType string
	// UTF8 is whether the client gave the SMTPUTF8 parameter at MAIL (RFC
	// 6531 §3.4): the message may have UTF-8 in its addresses and header
	// fields. Envelopes written before it existed load as false.
	UTF8 bool

	Arrived     time.Time // when the message started to arrive; Commit fills a zero value
	NextAttempt time.Time // when to try delivery next; zero: as soon as possible
	Attempts    int       // delivery attempts made so far
	LastError   string    // why the last attempt failed, for queue listings
	Size        int64     // message size in bytes, without the envelope line; set by Commit

	// Bounce marks a message that is itself a delivery status
	// notification: it is never bounced (RFC 3464 §2, no bounce loops).
	Bounce bool
}

// Recipient is one envelope recipient (RCPT TO) and how its delivery went.
type Recipient struct {
	Addr  string
	State RcptState
	Reply Reply // the last upstream reply or error for this recipient; zero: none yet
}

// RcptState is where a recipient's delivery stands.
type RcptState int

// Recipient states. Only Pending recipients are tried again.
const (
	Pending   RcptState = iota // not delivered yet
	Delivered                  // the upstream accepted it
	Failed                     // permanently refused or expired; bounced when the sender is not null
)

var rcptStateNames = [...]string{Pending: "pending", Delivered: "delivered", Failed: "failed"}

// String returns "pending", "delivered" or "failed".
func (s RcptState) String() string {
	if s >= 0 && int(s) < len(rcptStateNames) {
		return rcptStateNames[s]
	}
	return fmt.Sprintf("RcptState(%d)", int(s))
}

// MarshalText encodes the state as its name.
func (s RcptState) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(rcptStateNames) {
		return nil, fmt.Errorf("unknown recipient state %d", int(s))
	}
	return []byte(rcptStateNames[s]), nil
}

// UnmarshalText decodes a state name.
func (s *RcptState) UnmarshalText(b []byte) error {
	for i, name := range rcptStateNames {
		if string(b) == name {
			*s = RcptState(i)
			return nil
		}
	}
	return fmt.Errorf("unknown recipient state %q", b)
}

// clone returns a copy that shares nothing with e.
func (e *Envelope) clone() *Envelope {
	c := *e
	c.Recipients = slices.Clone(e.Recipients)
	return &c
}

// normalize makes the times of e what they will be when read back from
// the spool: UTC, without a monotonic clock reading.
func (e *Envelope) normalize() {
	e.Arrived = e.Arrived.Round(0).UTC()
	e.NextAttempt = e.NextAttempt.Round(0).UTC()
}

// check reports what makes e unfit to be queued.
func (e *Envelope) check() error {
	if e.Profile == "" {
		return errors.New("envelope has no profile")
	}
	if len(e.Recipients) == 0 {
		return errors.New("envelope has no recipients")
	}
	for _, r := range e.Recipients {
		if r.Addr == "" {
			return errors.New("envelope has an empty recipient")
		}
		if _, err := r.State.MarshalText(); err != nil {
			return fmt.Errorf("recipient %q: %w", r.Addr, err)
		}
	}
	if e.Attempts < 0 || e.Size < 0 {
		return errors.New("envelope has a negative count")
	}
	return nil
}

// envelopeHead is the JSON form of an Envelope without its size: the
// envelope line of ID.mail is written before the size is known.
type envelopeHead struct {
	Version     int             `json:"version"`
	ID          string          `json:"id"`
	Profile     string          `json:"profile"`
	From        string          `json:"from"`
	User        string          `json:"user,omitempty"`
	BodyType    string          `json:"body,omitempty"`
	UTF8        bool            `json:"smtputf8,omitempty"`
	Recipients  []recipientFile `json:"recipients"`
	Arrived     time.Time       `json:"arrived"`
	NextAttempt time.Time       `json:"next_attempt,omitzero"`
	Attempts    int             `json:"attempts"`
	LastError   string          `json:"last_error,omitempty"`
	Bounce      bool            `json:"bounce,omitempty"`
}

// envelopeFile is the JSON form of an Envelope, in ID.json and (with the
// size padded) in the envelope line.
type envelopeFile struct {
	envelopeHead
	Size int64 `json:"size"`
}

type recipientFile struct {
	Addr  string     `json:"addr"`
	State RcptState  `json:"state"`
	Reply *replyFile `json:"reply,omitempty"`
}

func headOf(e *Envelope) envelopeHead {
	h := envelopeHead{
		Version: FormatVersion, ID: e.ID, Profile: e.Profile, From: e.From, User: e.User, BodyType: e.BodyType, UTF8: e.UTF8,
		Recipients: make([]recipientFile, len(e.Recipients)),
		Arrived:    e.Arrived, NextAttempt: e.NextAttempt,
		Attempts: e.Attempts, LastError: e.LastError, Bounce: e.Bounce,
	}
	for i, r := range e.Recipients {
		h.Recipients[i] = recipientFile{Addr: r.Addr, State: r.State, Reply: fileReply(r.Reply)}
	}
	return h
}

// marshalEnvelope encodes e for ID.json, indented for people.
func marshalEnvelope(e *Envelope) ([]byte, error) {
	f := envelopeFile{envelopeHead: headOf(e), Size: e.Size}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // addresses may hold & < >
	enc.SetIndent("", "  ")
	if err := enc.Encode(&f); err != nil { // ends in a newline
		return nil, err
	}
	return b.Bytes(), nil
}

// The envelope line that starts ID.mail: a header field, so that the file
// stays an RFC 5322 message (as with the Return-Path an MDA prepends).
const (
	envHeaderName = "X-Relay-Envelope: "
	sizeKey       = `,"size":`
	sizeWidth     = 19 // digits of the largest int64
	// maxEnvLine bounds the envelope line Open reads; Create refuses a
	// longer one.
	maxEnvLine = 1 << 20
)

// appendEnvLine appends the envelope line of e to b: the envelope as
// compact JSON on one line, its size left as spaces at sizeOff (relative
// to the start of the line) for Commit to fill in.
func appendEnvLine(b []byte, e *Envelope) (_ []byte, sizeOff int, err error) {
	h := headOf(e)
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false) // addresses may hold & < >
	if err := enc.Encode(&h); err != nil {
		return nil, 0, err
	}
	obj := bytes.TrimSuffix(js.Bytes(), []byte("\n")) // {...}
	start := len(b)
	b = append(b, envHeaderName...)
	b = append(b, obj[:len(obj)-1]...) // without the closing brace
	b = append(b, sizeKey...)
	sizeOff = len(b) - start
	b = append(b, "                   "[:sizeWidth]...)
	b = append(b, "}\r\n"...)
	if len(b)-start > maxEnvLine {
		return nil, 0, fmt.Errorf("envelope line of %d bytes is too long", len(b)-start)
	}
	return b, sizeOff, nil
}

// putSize writes size over the padding at the start of p, which is where
// appendEnvLine left room for it.
func putSize(p []byte, size int64) {
	var d [sizeWidth]byte
	copy(p, strconv.AppendInt(d[:0], size, 10))
}

// errVersion marks a spool file written in a format this package does not
// know: Open stops rather than quarantine a newer relay's mail.
var errVersion = errors.New("unknown spool format version")

// parseEnvLine decodes the envelope line of ID.mail (line is the line
// without its CRLF), checking that it belongs to id.
func parseEnvLine(id string, line []byte) (*Envelope, error) {
	js, ok := bytes.CutPrefix(line, []byte(envHeaderName))
	if !ok {
		return nil, errors.New("the file does not start with an " + envHeaderName[:len(envHeaderName)-2] + " line")
	}
	return unmarshalEnvelope(id, js)
}

// unmarshalEnvelope decodes an envelope in JSON (ID.json, or the JSON of
// an envelope line), checking that it is complete and belongs to id. A
// version this package does not read is errVersion.
func unmarshalEnvelope(id string, b []byte) (*Envelope, error) {
	var f envelopeFile
	if err := json.Unmarshal(b, &f); err != nil { // also refuses trailing data
		return nil, err
	}
	switch {
	case f.Version < oldestVersion || f.Version > FormatVersion:
		return nil, fmt.Errorf("%w %d (this relay reads %d to %d)", errVersion, f.Version, oldestVersion, FormatVersion)
	case f.ID != id:
		return nil, fmt.Errorf("envelope says id %q", f.ID)
	case f.Arrived.IsZero():
		return nil, errors.New("envelope has no arrival time")
	}
	e := &Envelope{
		ID: f.ID, Profile: f.Profile, From: f.From, User: f.User, BodyType: f.BodyType, UTF8: f.UTF8,
		Recipients: make([]Recipient, len(f.Recipients)),
		Arrived:    f.Arrived, NextAttempt: f.NextAttempt,
		Attempts: f.Attempts, LastError: f.LastError, Size: f.Size, Bounce: f.Bounce,
	}
	for i, r := range f.Recipients {
		e.Recipients[i] = Recipient{Addr: r.Addr, State: r.State}
		if r.Reply != nil {
			e.Recipients[i].Reply = Reply(*r.Reply)
		}
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}
