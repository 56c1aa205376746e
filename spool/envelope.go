package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// FormatVersion is the envelope format this package writes and reads.
const FormatVersion = 1

// Envelope is everything relay knows about a queued message besides its
// body: where it goes, through which profile, and how delivery has gone so
// far.
type Envelope struct {
	ID         string      // set by Commit
	Profile    string      // the email profile that delivers the message
	From       string      // envelope sender (MAIL FROM); "" is the null sender
	User       string      // the local login that submitted the message, or ""
	Recipients []Recipient // at least one

	Arrived     time.Time // when the message started to arrive; Commit fills a zero value
	NextAttempt time.Time // when to try delivery next; zero: as soon as possible
	Attempts    int       // delivery attempts made so far
	LastError   string    // why the last attempt failed, for queue listings
	Size        int64     // body size in bytes; set by Commit

	// Bounce marks a message that is itself a delivery status
	// notification: it is never bounced (RFC 3464 §2, no bounce loops).
	Bounce bool
}

// Recipient is one envelope recipient (RCPT TO) and how its delivery went.
type Recipient struct {
	Addr  string
	State RcptState
	Reply string // the last upstream reply or error for this recipient
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
// ID.json: UTC, without a monotonic clock reading.
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

// envelopeFile is the JSON form of an Envelope in ID.json.
type envelopeFile struct {
	Version     int             `json:"version"`
	ID          string          `json:"id"`
	Profile     string          `json:"profile"`
	From        string          `json:"from"`
	User        string          `json:"user,omitempty"`
	Recipients  []recipientFile `json:"recipients"`
	Arrived     time.Time       `json:"arrived"`
	NextAttempt time.Time       `json:"next_attempt,omitzero"`
	Attempts    int             `json:"attempts"`
	LastError   string          `json:"last_error,omitempty"`
	Size        int64           `json:"size"`
	Bounce      bool            `json:"bounce,omitempty"`
}

type recipientFile struct {
	Addr  string    `json:"addr"`
	State RcptState `json:"state"`
	Reply string    `json:"reply,omitempty"`
}

func marshalEnvelope(e *Envelope) ([]byte, error) {
	f := envelopeFile{
		Version: FormatVersion, ID: e.ID, Profile: e.Profile, From: e.From, User: e.User,
		Recipients: make([]recipientFile, len(e.Recipients)),
		Arrived:    e.Arrived, NextAttempt: e.NextAttempt,
		Attempts: e.Attempts, LastError: e.LastError, Size: e.Size, Bounce: e.Bounce,
	}
	for i, r := range e.Recipients {
		f.Recipients[i] = recipientFile(r)
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// errVersion marks an envelope written in a format this package does not
// know: Open stops rather than quarantine a newer relay's mail.
var errVersion = errors.New("unknown envelope format version")

// unmarshalEnvelope decodes ID.json, checking that it is complete and
// belongs to id.
func unmarshalEnvelope(id string, b []byte) (*Envelope, error) {
	var f envelopeFile
	if err := json.Unmarshal(b, &f); err != nil { // also refuses trailing data
		return nil, err
	}
	if f.Version != FormatVersion {
		return nil, fmt.Errorf("%w %d (this relay reads %d)", errVersion, f.Version, FormatVersion)
	}
	if f.ID != id {
		return nil, fmt.Errorf("envelope says id %q", f.ID)
	}
	if f.Arrived.IsZero() {
		return nil, errors.New("envelope has no arrival time")
	}
	e := &Envelope{
		ID: f.ID, Profile: f.Profile, From: f.From, User: f.User,
		Recipients: make([]Recipient, len(f.Recipients)),
		Arrived:    f.Arrived, NextAttempt: f.NextAttempt,
		Attempts: f.Attempts, LastError: f.LastError, Size: f.Size, Bounce: f.Bounce,
	}
	for i, r := range f.Recipients {
		e.Recipients[i] = Recipient(r)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}
