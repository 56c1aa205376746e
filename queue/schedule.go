package queue

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
)

// Schedule is the retry schedule of [queue]: Postfix's by default.
type Schedule struct {
	Min, Max, Lifetime time.Duration
}

// ScheduleOf is the schedule a [queue] table sets.
func ScheduleOf(q config.Queue) Schedule {
	return Schedule{Min: q.MinBackoff.D(), Max: q.MaxBackoff.D(), Lifetime: q.MaxLifetime.D()}
}

// Backoff is the wait after the given number of failed attempts (>= 1):
// Min doubled after each attempt, at most Max, spread by jitter (a factor
// near 1) so that messages deferred together do not retry together. It is
// computed in floating point: an integer-truncated multiplier (a known bug
// in a peer's queue) never grows.
func (s Schedule) Backoff(attempts int, jitter float64) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := float64(s.Min) * math.Pow(2, float64(attempts-1))
	if d > float64(s.Max) || math.IsInf(d, 0) {
		d = float64(s.Max)
	}
	return time.Duration(d * jitter)
}

// expiredStatus is the enhanced status of a recipient that outlived
// max_lifetime without a code of its own: RFC 3463 X.4.7, delivery time
// expired.
const expiredStatus = "4.4.7"

// finish records an attempt: removes a message with nothing pending,
// bounces newly failed recipients, expires what outlived max_lifetime, and
// schedules the next attempt for the rest.
func (q *Queue) finish(env *spool.Envelope, it *item, err error, newlyFailed []spool.Recipient) {
	now := q.now()
	cfg := q.profiles.Config()
	sched := ScheduleOf(cfg.Queue)
	pending := 0
	for _, r := range env.Recipients {
		if r.State == spool.Pending {
			pending++
		}
	}
	// The replies of expired recipients before they expired: should the
	// bounce have to wait, they are pending again, as they were.
	var expired map[string]spool.Reply
	// Mail of a profile no longer configured waits for it (or for relay
	// queue delete): a bounce would have no profile to go through.
	if pending > 0 && now.Sub(env.Arrived) >= sched.Lifetime && cfg.Profile(env.Profile) != nil {
		expired = make(map[string]spool.Reply)
		for i := range env.Recipients {
			r := &env.Recipients[i]
			if r.State == spool.Pending {
				expired[r.Addr] = r.Reply
				r.State = spool.Failed
				r.Reply = spool.Reply{
					Code:     r.Reply.Code,
					Enhanced: cmp.Or(r.Reply.Enhanced, expiredStatus),
					Text:     fmt.Sprintf("gave up after %d attempts over %s: %s", env.Attempts, now.Sub(env.Arrived).Round(time.Minute), r.Reply.Text),
				}
				newlyFailed = append(newlyFailed, *r)
			}
		}
		q.logger.Warn("expired", "id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", pending, "size", env.Size, "attempts", env.Attempts, "error", errText(err), oauth.ReplyHintAttr(errText(err)))
		pending = 0
	}
	if len(newlyFailed) > 0 {
		if berr := q.bounce(env, newlyFailed, now); berr != nil {
			// Only the bounce tells the sender: without it the failed
			// recipients stay pending, to fail and bounce again later.
			for i := range env.Recipients {
				r := &env.Recipients[i]
				if r.State == spool.Failed && slices.ContainsFunc(newlyFailed, func(f spool.Recipient) bool { return f.Addr == r.Addr }) {
					r.State = spool.Pending
					if before, ok := expired[r.Addr]; ok {
						r.Reply = before
					}
					pending++
				}
			}
			if err == nil {
				err = fmt.Errorf("queue the bounce: %w", berr)
			}
		}
	}
	if pending == 0 {
		if rerr := q.spool.Remove(env.ID); rerr != nil {
			q.logger.Error("cannot remove a finished message from the spool; it may be delivered again", "id", env.ID, "error", rerr)
		}
		q.forget(it)
		return
	}
	env.NextAttempt = now.Add(sched.Backoff(env.Attempts, 0.9+0.2*rand.Float64()))
	env.LastError = errText(err)
	// Not cut short by Close: the attempt happened, and the old envelope
	// would have it made again.
	if uerr := q.spool.Update(context.WithoutCancel(q.abort), env); uerr != nil {
		// The old envelope stays: the message is retried sooner, with
		// recipients delivered meanwhile maybe delivered again.
		q.logger.Error("cannot update a queued message", "id", env.ID, "error", uerr)
	}
	q.logger.Info("deferred", "id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", pending, "size", env.Size, "attempts", env.Attempts,
		"next_attempt", env.NextAttempt.Format(time.RFC3339), "error", env.LastError, oauth.ReplyHintAttr(env.LastError))
	q.events(Event{Kind: EventDeferred, ID: env.ID, Profile: env.Profile, Err: env.LastError})
	q.release(it, env.NextAttempt)
}
