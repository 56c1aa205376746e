package queue

import (
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// take gives a worker the next ready message of its profile, claimed, or
// nil.
func (q *Queue) take(l *lane) *item {
	q.mu.Lock()
	defer q.mu.Unlock()
	// After Close nothing more is taken: an attempt would fail at once and
	// put the message back, due, for the next one to take.
	for len(l.ready) > 0 && !q.stopping && q.abort.Err() == nil {
		it := l.ready[0]
		l.ready = l.ready[1:]
		if q.items[it.id] != it || it.state != ready {
			continue // deleted, held by an operation or taken meanwhile
		}
		it.state = inflight
		return it
	}
	return nil
}

// idleOrExit waits up to linger for more work. It returns false when the
// worker should end; the worker count is then already decremented. A kick
// that another worker answered first does not end the wait.
func (q *Queue) idleOrExit(l *lane, keep bool) (more, waited bool) {
	deadline := time.Now().Add(linger)
	for {
		q.mu.Lock()
		if len(l.ready) > 0 && !q.stopping && q.abort.Err() == nil {
			q.mu.Unlock()
			return true, waited
		}
		remaining := time.Until(deadline)
		if !keep || q.stopping || remaining <= 0 || q.abort.Err() != nil {
			l.workers--
			q.mu.Unlock()
			return false, waited
		}
		l.idle++
		kick := l.kick
		q.mu.Unlock()
		waited = true
		t := time.NewTimer(remaining)
		select {
		case <-kick:
		case <-t.C:
		case <-q.abort.Done():
		}
		t.Stop()
		q.mu.Lock()
		l.idle--
		q.mu.Unlock()
	}
}

// worker delivers its profile's ready messages over one connection at a
// time, reopening it when it breaks.
func (q *Queue) worker(l *lane) {
	defer q.workers.Done()
	var c Conn
	uses := 0      // messages c has carried
	idled := false // c sat idle since its last message
	hangUp := func() {
		if c != nil {
			c.Close()
			c = nil
			q.mu.Lock()
			l.connected--
			q.mu.Unlock()
		}
	}
	defer hangUp()
	for {
		it := q.take(l)
		if it == nil {
			more, waited := q.idleOrExit(l, c != nil)
			if !more {
				return
			}
			idled = idled || waited
			continue
		}
		if c != nil && idled && c.Reset(q.abort) != nil {
			// RSET before reusing a connection that sat idle, as Postfix
			// does with cached connections: a dead one is replaced before
			// a message goes out on it.
			hangUp()
		}
		idled = false
		for {
			if c != nil && !c.Usable() {
				hangUp()
			}
			if c == nil {
				q.mu.Lock()
				l.opening++
				q.mu.Unlock()
				conn, err := q.open(l.name)
				q.mu.Lock()
				l.opening--
				if err == nil {
					l.connected++
				}
				q.mu.Unlock()
				if err != nil {
					if q.abort.Err() != nil {
						// Close cut the attempt short: the relay stops, the
						// upstream did not fail. The message stays as it was.
						q.release(it, time.Time{})
						break
					}
					if q.handBack(l, it) {
						// Other connections of the profile work, or are
						// being opened: the upstream refuses one more
						// (Office 365 allows a few per mailbox). They take
						// the message; this worker ends. The last worker
						// whose connection fails defers the profile.
						q.logger.Info("no further connection to the upstream; the open ones carry on", "profile", l.name, "error", err.Error())
						return
					}
					// The upstream, its login or the token is the trouble,
					// not this message: defer every ready message of the
					// profile.
					q.deferProfile(l, it, err)
					break
				}
				c = conn
				uses = 0
			}
			uses++
			if !q.deliver(c, it, uses > 1) {
				break
			}
			// The kept connection had died while idle (the server closed
			// it): send again on a new one, without counting an attempt.
			hangUp()
		}
	}
}

// handBack returns it, untried, to the front of the ready list when
// another worker of the profile holds a working connection or is opening
// one, and ends this worker's count. It reports whether it did.
func (q *Queue) handBack(l *lane, it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.connected+l.opening == 0 || q.items[it.id] != it {
		return false
	}
	it.state = ready
	l.ready = append([]*item{it}, l.ready...)
	l.workers--
	if l.idle > 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// stale reports whether err means that a kept connection died while idle:
// no reply at all to the first command of a transaction.
func stale(err error) bool {
	var ue *upstream.Error
	// RFC 5321 §3.8: a 421 is the server closing the channel, too.
	return errors.As(err, &ue) && (ue.Code == 0 || ue.Code == 421) && (ue.Step == upstream.StepMail || ue.Step == upstream.StepReset)
}

func (q *Queue) open(profile string) (Conn, error) {
	if q.profiles.Config().Profile(profile) == nil {
		return nil, fmt.Errorf("profile %q is not in the configuration; the message waits until it is", profile)
	}
	return q.profiles.Open(q.abort, profile)
}

// deferProfile defers it and every message still ready for the profile
// after a connection could not be opened.
func (q *Queue) deferProfile(l *lane, it *item, err error) {
	q.mu.Lock()
	batch := []*item{it}
	for _, r := range l.ready {
		if q.items[r.id] == r && r.state == ready {
			r.state = inflight
			batch = append(batch, r)
		}
	}
	l.ready = l.ready[:0]
	q.mu.Unlock()
	reply := replyOf(err)
	for _, b := range batch {
		env, eerr := q.spool.Envelope(b.id)
		if eerr != nil {
			q.forget(b)
			continue
		}
		env.Attempts++
		for i := range env.Recipients {
			if env.Recipients[i].State == spool.Pending {
				env.Recipients[i].Reply = reply
			}
		}
		q.finish(env, b, err, nil)
	}
}

// deliver sends one message over c and records the outcome. On a reused
// connection that turns out dead it records nothing and returns true: send
// again on a new connection.
func (q *Queue) deliver(c Conn, it *item, reused bool) (again bool) {
	env, err := q.spool.Envelope(it.id)
	if err != nil {
		q.forget(it)
		return false
	}
	var pending []int
	var to []string
	for i, r := range env.Recipients {
		if r.State == spool.Pending {
			pending = append(pending, i)
			to = append(to, r.Addr)
		}
	}
	if len(pending) == 0 {
		q.finish(env, it, nil, nil)
		return false
	}
	body, err := q.spool.Open(it.id)
	if err != nil {
		q.finish(env, it, fmt.Errorf("open queued message: %w", err), nil)
		return false
	}
	start := q.now()
	msg := &upstream.Message{From: env.From, To: to, Body: body, Size: env.Size, UTF8: upstream.NeedsSMTPUTF8(append([]string{env.From}, to...)...), UTF8Declared: env.UTF8, BodyType: env.BodyType}
	res, err := c.Send(q.abort, msg)
	body.Close()
	if err != nil && q.abort.Err() != nil {
		// Shut down mid-delivery: the message stays queued as it was and
		// goes out again after the restart (at least once, never lost).
		// A transaction that ended with the upstream's answer is recorded.
		q.release(it, time.Time{})
		return false
	}
	if reused && stale(err) {
		return true
	}
	env.Attempts++
	newlyFailed := record(env, pending, res, &err)
	q.logOutcome(env, res, err, pending, start)
	q.finish(env, it, err, newlyFailed)
	return false
}

// record writes the outcome of a transaction into the pending recipients
// of env and returns those that failed for good. A temporary refusal of a
// recipient becomes *err when the transaction itself went through.
func record(env *spool.Envelope, pending []int, res *upstream.Result, err *error) (newlyFailed []spool.Recipient) {
	if *err != nil {
		reply := replyOf(*err)
		for _, i := range pending {
			r := &env.Recipients[i]
			r.Reply = reply
			if permanent(*err) {
				r.State = spool.Failed
				newlyFailed = append(newlyFailed, *r)
			}
		}
		return newlyFailed
	}
	for k, i := range pending {
		r := &env.Recipients[i]
		switch rerr := res.Rcpts[k]; {
		case rerr == nil:
			r.State, r.Reply = spool.Delivered, spool.Reply{Text: res.Reply}
		case permanent(rerr):
			r.State, r.Reply = spool.Failed, replyOf(rerr)
			newlyFailed = append(newlyFailed, *r)
		default:
			r.Reply = replyOf(rerr)
			if *err == nil {
				*err = rerr
			}
		}
	}
	return newlyFailed
}

// permanent reports whether err is the upstream's refusal for good: only
// that bounces; anything else is tried again.
func permanent(err error) bool {
	var ue *upstream.Error
	return errors.As(err, &ue) && !ue.Temporary
}

// replyOf is the outcome err stands for: the upstream's codes when it
// answered, and the error's text.
func replyOf(err error) spool.Reply {
	r := spool.Reply{Text: err.Error()}
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Code != 0 {
		r.Code = ue.Code
		if ec := ue.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
			r.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		}
	}
	return r
}

// logOutcome writes one line per message event, Postfix-style.
func (q *Queue) logOutcome(env *spool.Envelope, res *upstream.Result, err error, pending []int, start time.Time) {
	attrs := []any{"id", env.ID, "profile", env.Profile, "from", env.From, "rcpts", len(pending), "size", env.Size,
		"attempts", env.Attempts, "duration", q.now().Sub(start).Round(time.Millisecond), "delay", q.now().Sub(env.Arrived).Round(time.Second)}
	delivered := 0
	for _, i := range pending {
		if env.Recipients[i].State == spool.Delivered {
			delivered++
		}
	}
	q.events(Event{Kind: EventAttempt, ID: env.ID, Profile: env.Profile, Duration: q.now().Sub(start), Err: errText(err)})
	if delivered > 0 {
		reply := ""
		if res != nil {
			reply = res.Reply
		}
		q.logger.Info("delivered", append(attrs, "delivered", delivered, "reply", reply)...)
		q.events(Event{Kind: EventDelivered, ID: env.ID, Profile: env.Profile})
	}
}
