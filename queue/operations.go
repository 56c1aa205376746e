package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relaymail/relay/spool"
)

// List returns every queued message, oldest first.
func (q *Queue) List() ([]*spool.Envelope, error) { return q.spool.List() }

// Oldest returns when the oldest queued message arrived, or the zero time
// when the queue is empty.
func (q *Queue) Oldest() time.Time { return q.spool.Oldest() }

// ErrInDelivery is returned by Delete for a message being delivered.
var ErrInDelivery = errors.New("the message is being delivered right now; try again in a moment")

// hold claims the message of env for an operation. It fails when a worker
// delivers the message or another operation holds it, and, unless
// readyToo, when it is due and waits for a worker. A message the queue has
// no item for yet (committed, not yet enqueued; or the queue does not run)
// gets one.
func (q *Queue) hold(env *spool.Envelope, readyToo bool) (*item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[env.ID]
	if it == nil {
		it = &item{id: env.ID, profile: env.Profile, next: env.NextAttempt}
		q.items[it.id] = it
	}
	if it.state != waiting && (it.state != ready || !readyToo) {
		return nil, false
	}
	it.state = held
	return it, true
}

// unhold ends an operation that leaves the message queued, due now when
// due is set. The caller signals the queue to look at it.
func (q *Queue) unhold(it *item, due bool) {
	q.mu.Lock()
	if q.items[it.id] == it {
		it.state = waiting
		if due {
			it.next = time.Time{}
		}
	}
	q.mu.Unlock()
}

// Retry makes queued messages due now: one by ID, or all with "all". It
// returns how many it rescheduled.
func (q *Queue) Retry(ctx context.Context, id string) (int, error) {
	envs, err := q.spool.List()
	if err != nil {
		return 0, err
	}
	// Once, at the end, as one batch; also after an error.
	defer q.signal()
	n := 0
	for _, env := range envs {
		if id != "all" && env.ID != id {
			continue
		}
		n++
		it, ok := q.hold(env, false)
		if !ok {
			continue // ready or being delivered already
		}
		// The listed envelope may predate an attempt that ended since:
		// change the current one, or that attempt's outcome is lost.
		cur, err := q.spool.Envelope(env.ID)
		if err == nil {
			cur.NextAttempt = time.Time{}
			err = q.spool.Update(ctx, cur)
		}
		if errors.Is(err, spool.ErrNotFound) {
			q.forget(it) // delivered or deleted meanwhile
			continue
		}
		if err != nil {
			q.unhold(it, false)
			return n, err
		}
		q.unhold(it, true)
	}
	if id != "all" && n == 0 {
		return 0, fmt.Errorf("no queued message %s: %w", id, spool.ErrNotFound)
	}
	return n, nil
}

// Delete removes a queued message without delivering it.
func (q *Queue) Delete(id string) error {
	env, err := q.spool.Envelope(id)
	if err != nil {
		return err
	}
	it, ok := q.hold(env, true)
	if !ok {
		return ErrInDelivery
	}
	if err := q.spool.Remove(id); err != nil {
		if errors.Is(err, spool.ErrNotFound) {
			q.forget(it)
		} else {
			q.unhold(it, false)
			q.signal()
		}
		return err
	}
	q.forget(it)
	q.logger.Info("deleted", "id", id)
	return nil
}
