package relay

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/sasllogin"
	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/spool"
	"github.com/relaymail/relay/upstream"
)

// session is one client connection. go-smtp sessions have no context, so
// each makes its own, ended by Logout.
type session struct {
	srv    *Server
	conn   *smtp.Conn
	remote netip.Addr
	tls    bool
	helo   string
	ctx    context.Context
	cancel context.CancelFunc
	logger *slog.Logger

	user string // logged-in user name, or ""
	tx   *transaction

	// delivery is the upstream connection of a direct-mode transaction,
	// kept for the next transaction to the same profile.
	delivery        Delivery
	deliveryProfile string

	// dataMu guards tx and the upstream connection; Data holds it while
	// it runs. go-smtp runs Data for BDAT in a goroutine of its own and
	// goes on reading commands, so Reset, Logout and even MAIL may come
	// while a Data still runs or has yet to start (bdat.go).
	dataMu     sync.Mutex
	dc         *deadlineConn // the connection's limits (limits.go)
	maxMessage int64         // max_message_bytes as go-smtp holds it, for relay's DATA reader (datareader.go)
}

// transaction is one message from MAIL FROM to the end of DATA.
type transaction struct {
	id      string
	st      *state
	profile *config.Profile
	from    string
	utf8    bool
	size    int64
	body    string // BODY= as declared at MAIL: "", "7BIT" or "8BITMIME" (RFC 6152)
	rcpts   []string
	begun   bool // MAIL was sent upstream (direct mode)
}

func newSession(s *Server, c *smtp.Conn) *session {
	sess := &session{srv: s, conn: c, remote: remoteAddr(c.Conn()), helo: c.Hostname(), maxMessage: c.Server().MaxMessageBytes}
	sess.ctx, sess.cancel = context.WithCancel(s.ctx)
	sess.logger = s.logger.With("client", sess.remote.String())
	// relay's TLS lies beneath its gate: go-smtp's connection is the
	// deadlineConn, never a *tls.Conn (starttls.go).
	if sess.dc = deadlinesOf(c.Conn()); sess.dc != nil {
		_, sess.tls = sess.dc.TLSConnectionState()
	}
	return sess
}

// authAllowed: AUTH PLAIN and LOGIN only over TLS or from loopback, so a
// password never crosses a network in the clear.
func (s *session) authAllowed() bool { return s.tls || s.remote.IsLoopback() }

// AuthMechanisms implements smtp.AuthSession.
func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// dummyHash is compared against when the user is unknown, so that a
// login for a missing user takes as long as a wrong password. It is made
// on first use: every relay command starts without paying for it.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("relay: no such user"), bcrypt.DefaultCost)
	return h
})

// auth starts an AUTH exchange (Auth, refusal.go).
func (s *session) auth(mech string) (sasl.Server, error) {
	if s.tx != nil {
		// RFC 4954 §4: AUTH is not permitted during a mail transaction.
		return nil, &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "AUTH not permitted during a mail transaction"}
	}
	if !s.authAllowed() {
		// RFC 4954 §6: 538 encryption required for requested mechanism.
		return nil, &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required: use STARTTLS before AUTH"}
	}
	// throttle.go: failures are slowed down and logged there.
	check := s.throttled(mech, func(name, password string) error {
		u := s.srv.state.Load().policy.User(name)
		hash := dummyHash()
		if u != nil {
			hash = []byte(u.PasswordHash)
		}
		if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || u == nil {
			return smtp.ErrAuthFailed
		}
		s.user = name
		s.logger = s.logger.With("user", name)
		s.logger.Debug("authenticated", "mechanism", mech)
		return nil
	})
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return saslError{s, sasl.NewPlainServer(func(identity, name, password string) error {
			if identity != "" && identity != name {
				return smtp.ErrAuthFailed
			}
			return check(name, password)
		}).Next}, nil
	case sasl.Login:
		return saslError{s, sasllogin.NewServer(check).Next}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// mail picks the transaction's profile (Mail, refusal.go).
func (s *session) mail(from string, opts *smtp.MailOptions) error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.tx != nil {
		// RFC 5321 §4.1.4: MAIL during a transaction is out of sequence.
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command: send RSET first"}
	}
	if from != "" {
		if err := checkAddress(from, opts != nil && opts.UTF8, true); err != nil {
			return err
		}
	}
	if s.conn != nil {
		s.helo = s.conn.Hostname() // the latest EHLO, for the Received header
	}
	st := s.srv.state.Load()
	var user *config.User
	if s.user != "" {
		if user = st.policy.User(s.user); user == nil {
			// The user was removed by a reload.
			return errAuthRequired
		}
	}
	p, refusal := st.policy.Select(user, s.remote, from)
	if refusal != nil {
		return refusal
	}
	s.tx = &transaction{id: newID(), st: st, profile: p, from: from}
	if opts != nil {
		s.tx.utf8, s.tx.size, s.tx.body = opts.UTF8, opts.Size, string(opts.Body)
	}
	if s.dc != nil {
		s.dc.setTx(true) // a shutdown lets this transaction finish
	}
	return nil
}

// rcpt adds a recipient (Rcpt, refusal.go). In direct mode the recipient
// is passed to the upstream at once, so the client sees the upstream's
// answer for it.
func (s *session) rcpt(to string, _ *smtp.RcptOptions) error {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	tx := s.tx
	if tx == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	if len(tx.rcpts) >= tx.st.cfg.Server.MaxRecipients {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients"}
	}
	if to == "" {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Empty recipient address"}
	}
	if err := checkAddress(to, tx.utf8, false); err != nil {
		return err
	}
	if s.direct() {
		if err := s.begin(); err != nil {
			return err
		}
		if err := s.delivery.Rcpt(s.ctx, to); err != nil {
			return s.reply(err)
		}
	}
	tx.rcpts = append(tx.rcpts, to)
	return nil
}

// direct reports whether the transaction waits for the upstream
// (delivery = "direct", or a server without a spool).
func (s *session) direct() bool {
	return s.tx.profile.Delivery == config.DeliveryDirect || s.srv.queue == nil
}

// begin opens the upstream connection, or reuses the last one, and sends
// MAIL FROM.
func (s *session) begin() error {
	tx := s.tx
	if tx.begun {
		return nil
	}
	if s.delivery != nil && (s.deliveryProfile != tx.profile.Name || !s.delivery.Usable()) {
		s.delivery.Close()
		s.delivery = nil
	}
	if s.delivery == nil {
		t := tx.st.transports[tx.profile.Name]
		d, err := t.Open(s.ctx)
		if err != nil {
			return s.reply(err)
		}
		s.delivery, s.deliveryProfile = d, tx.profile.Name
	}
	if err := s.delivery.Mail(s.ctx, &upstream.Message{From: tx.from, Size: tx.size, UTF8: upstream.NeedsSMTPUTF8(tx.from), UTF8Declared: tx.utf8, BodyType: tx.body}); err != nil {
		return s.reply(err)
	}
	tx.begun = true
	return nil
}

// data receives the message (Data, refusal.go, which makes every error an
// *smtp.SMTPError: go-smtp turns anything else into a permanent 554).
// Data holds s.dataMu, through its answer.
func (s *session) data(r io.Reader) error {
	tx := s.tx
	if tx == nil || len(tx.rcpts) == 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "RCPT first"}
	}
	start := s.srv.opts.Now()
	s.beginData() // limits.go: a bounded time for the whole message
	in := &readErrRecorder{r: newHeaderLimitReader(s.guardEOF(s.messageReader(r)), tx.st.cfg.Server.MaxHeaderBytes)}
	body := newCRLFReader(in)
	if !s.direct() {
		return s.enqueue(tx, in, body, start)
	}
	msg := io.MultiReader(strings.NewReader(s.received(tx, start)), body)
	counted := &countingReader{r: msg}
	log := s.logger.With("id", tx.id, "profile", tx.profile.Name, "from", tx.from, "rcpts", len(tx.rcpts))

	if err := s.begin(); err != nil {
		return err
	}
	sent := s.srv.opts.Now()
	reply, err := s.delivery.Data(s.ctx, counted)
	tx.begun = false
	if in.err != nil && !errors.Is(in.err, io.EOF) {
		// The client's side failed: too big, cut off or timed out. The
		// upstream never got the end of the message.
		return clientDataRefusal(in.err, "id", tx.id, "profile", tx.profile.Name, "size", counted.n)
	}
	if body.Normalized > 0 {
		log.Info("line endings normalised to CRLF", "count", body.Normalized)
	}
	ev := Event{ID: tx.id, Profile: tx.profile.Name}
	s.srv.emit(Event{Kind: EventReceived, ID: tx.id, Profile: tx.profile.Name})
	s.srv.emit(Event{Kind: EventAttempt, ID: tx.id, Profile: tx.profile.Name, Duration: s.srv.opts.Now().Sub(sent), Err: errString(err)})
	if err != nil {
		r := s.reply(err)
		log.Log(s.ctx, max(r.level, slog.LevelWarn), "delivery failed", "size", counted.n, "reply", replyString(r.reply), "error", err.Error(), oauth.ReplyHintAttr(err.Error()), "duration", time.Since(start).Round(time.Millisecond))
		ev.Kind, ev.Err = EventDeferred, err.Error()
		if r.reply.Code/100 == 5 {
			ev.Kind = EventBounced
		}
		s.srv.emit(ev)
		return &refusal{reply: r.reply, logged: true}
	}
	log.Info("delivered", "size", counted.n, "reply", reply, "duration", time.Since(start).Round(time.Millisecond))
	ev.Kind = EventDelivered
	s.srv.emit(ev)
	code, text := smtp.EnhancedCode{2, 0, 0}, reply
	if ec, rest, ok := splitEnhancedCode(reply); ok && ec[0] == 2 {
		code, text = ec, rest
	}
	// go-smtp writes the code and text of a returned *smtp.SMTPError, so a
	// 250 carries the upstream's own enhanced code and text.
	return &smtp.SMTPError{Code: 250, EnhancedCode: code, Message: fmt.Sprintf("%s id=%s", text, tx.id)}
}

// enqueue stores the message in the spool; the 250 is given only once it
// is on disk and fsynced.
func (s *session) enqueue(tx *transaction, in *readErrRecorder, body *crlfReader, start time.Time) error {
	sp := s.srv.opts.Spool
	env := &spool.Envelope{Profile: tx.profile.Name, From: tx.from, User: s.user, BodyType: tx.body, UTF8: tx.utf8}
	for _, r := range tx.rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Addr: r})
	}
	w, err := sp.Create(s.ctx, env)
	if err != nil {
		return localTrouble("create a spool file", err)
	}
	tx.id = w.ID()
	log := s.logger.With("id", tx.id, "profile", tx.profile.Name, "from", tx.from, "rcpts", len(tx.rcpts))
	if _, err := io.WriteString(w, s.received(tx, start)); err != nil {
		w.Abort()
		return localTrouble("write the spool file", err)
	}
	if _, err := io.Copy(w, body); err != nil {
		w.Abort()
		if in.err != nil && !errors.Is(in.err, io.EOF) {
			return clientDataRefusal(in.err, "id", tx.id, "profile", tx.profile.Name)
		}
		return localTrouble("write the spool file", err)
	}
	if body.Normalized > 0 {
		log.Info("line endings normalised to CRLF", "count", body.Normalized)
	}
	if _, err := w.Commit(s.ctx); err != nil {
		return localTrouble("commit the message to the spool", err)
	}
	// Received comes before the queue may deliver it.
	s.srv.emit(Event{Kind: EventReceived, ID: tx.id, Profile: tx.profile.Name})
	s.srv.queue.Enqueue(env)
	log.Info("received", "size", env.Size, "queued_as", tx.id, "duration", time.Since(start).Round(time.Millisecond))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + tx.id}
}

// splitEnhancedCode parses "2.0.0 rest" (RFC 3463).
func splitEnhancedCode(s string) (smtp.EnhancedCode, string, bool) {
	first, rest, _ := strings.Cut(s, " ")
	var a, b, c int
	if n, err := fmt.Sscanf(first, "%d.%d.%d", &a, &b, &c); n != 3 || err != nil {
		return smtp.EnhancedCode{}, s, false
	}
	return smtp.EnhancedCode{a, b, c}, rest, true
}

// Reset implements smtp.Session.
func (s *session) Reset() {
	// go-smtp has ended a BDAT message before it calls Reset, so a Data
	// still running ends soon.
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.dc != nil {
		// Every reply relay announced has gone out by now, but that of a
		// BDAT message refused before its LAST chunk and then ended by
		// RSET, EHLO or STARTTLS: go-smtp never sends it.
		s.dc.replies.forget()
	}
	if s.tx != nil && s.tx.begun && s.delivery != nil {
		if err := s.delivery.Reset(s.ctx); err != nil {
			s.delivery.Close()
			s.delivery = nil
		}
	}
	s.tx = nil
	if s.dc != nil {
		s.dc.setTx(false)
	}
}

// Logout implements smtp.Session.
func (s *session) Logout() error {
	s.flushReplies() // limits.go: the client's 221 or 421 goes out first
	s.cancel()
	if !s.dataMu.TryLock() {
		// Data is still running for BDAT: on STARTTLS go-smtp logs the
		// session out before it ends the message (bdat.go).
		go s.logoutAfterData()
		return nil
	}
	defer s.dataMu.Unlock()
	if s.delivery != nil {
		s.delivery.Close()
		s.delivery = nil
	}
	return nil
}

// received is the trace header relay adds (RFC 5321 §4.4), with the
// protocol keyword of RFC 3848.
func (s *session) received(tx *transaction, now time.Time) string {
	proto := "ESMTP"
	if s.tls {
		proto += "S"
	}
	if s.user != "" {
		proto += "A"
	}
	helo := s.helo
	// RFC 5321 §4.5.3.1.2: a domain has at most 255 octets; a longer
	// name would make a header line the upstream refuses (RFC 5322
	// §2.1.1: 998).
	helo = sanitizeHeader(helo[:min(len(helo), 255)])
	if helo == "" {
		helo = "unknown"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (relay) with %s id %s", helo, s.remote, sanitizeHeader(tx.st.cfg.Server.Hostname), proto, tx.id)
	if len(tx.rcpts) == 1 && len(tx.rcpts[0]) <= 254 { // RFC 5321 §4.5.3.1.3
		fmt.Fprintf(&b, "\r\n\tfor <%s>", sanitizeHeader(tx.rcpts[0]))
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// sanitizeHeader keeps what may appear in a header field: printable ASCII
// without the comment and separator characters of the Received grammar.
func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' || r == ';' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID makes a message ID for logs and replies.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// readErrRecorder remembers the error of the client's side of DATA.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil {
		r.err = err
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
