package queue

import "time"

// EventKind names a message event, as the queue's log lines do.
type EventKind string

// Message events. Received, Delivered, Deferred and Bounced are counted once
// per message and event, like the log lines; Attempt is one upstream
// transaction, for latency.
const (
	// EventReceived: a client's message was queued (delivery = "queue"),
	// or handed to the upstream at once (delivery = "direct").
	EventReceived EventKind = "received"
	// EventDelivered: the upstream accepted the message for at least one
	// recipient.
	EventDelivered EventKind = "delivered"
	// EventDeferred: recipients remain after a temporary failure; the
	// queue retries them. In direct mode the client was given a 4xx and
	// retries itself.
	EventDeferred EventKind = "deferred"
	// EventBounced: recipients failed for good (a 5xx, or the message
	// outlived max_lifetime); a bounce goes to the sender. In direct mode
	// the client was given the upstream's 5xx.
	EventBounced EventKind = "bounced"
	// EventAttempt: one transaction with the upstream ended; Duration is
	// how long it took and Err why it failed, if it did.
	EventAttempt EventKind = "attempt"
)

// Event is one message event, for metrics and status pages. It holds no
// message content and no secret.
type Event struct {
	Kind    EventKind
	ID      string // queue ID, or the transaction ID in direct mode
	Profile string
	// Duration is the upstream transaction's duration (EventAttempt).
	Duration time.Duration
	// Err is the failure of an attempt, or why a message was deferred or
	// bounced; "" otherwise.
	Err string
}

// errText is err's text, or "" for nil: the form of Event.Err.
func errText(err error) string {
	if err != nil {
		return err.Error()
	}
	return ""
}
