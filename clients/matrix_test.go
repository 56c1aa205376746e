package clients

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// mode is how a client connects and logs in.
type mode struct {
	name     string
	security string // "plain", "starttls" or "tls"
	mech     string // "" sends without a login
	// big also sends the 5 MB attachment in this mode. Every client sends
	// it in clear and over TLS, which hand relay the message in different
	// pieces; the login mechanism does not change how the message is
	// read, so the other modes send only the small message, which keeps
	// the matrix within its time budget.
	big bool
}

// protocol is the keyword of relay's Received header for m (RFC 3848).
func (m mode) protocol() string {
	p := "ESMTP"
	if m.security != "plain" {
		p += "S"
	}
	if m.mech != "" {
		p += "A"
	}
	return p
}

var modes = []mode{
	{name: "plain", security: "plain", big: true},                            // loopback, no login: routed by sender
	{name: "starttls-plain", security: "starttls", mech: "PLAIN", big: true}, // RFC 3207 + RFC 4616
	{name: "starttls-login", security: "starttls", mech: "LOGIN"},            // what Office 365 taught clients
	{name: "tls-login", security: "tls", mech: "LOGIN", big: true},           // RFC 8314 implicit TLS: Ignition's "Use SSL"
}

// TestClientMatrix sends with every client program, in every mode, a
// small message and (see mode.big) one with a 5 MB binary attachment, into
// the Maildir profile and through the queue to the upstream, and checks
// what arrives.
func TestClientMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the client matrix takes a minute or two; not with -short")
	}
	r := startRig(t)
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			if why := p.missing(); why != "" {
				t.Skip(why)
			}
			for _, m := range modes {
				sizes := []bool{false}
				if m.big {
					sizes = append(sizes, true)
				}
				for _, d := range destinations {
					for _, big := range sizes {
						name := fmt.Sprintf("%s/%s/%s", m.name, d.name, sizeName(big))
						t.Run(name, func(t *testing.T) {
							t.Parallel()
							r.sendAndCheck(t, p, m, d, big)
						})
					}
				}
			}
		})
	}
}

// sendAndCheck sends one message with p and checks it at d. A client that
// logs in sends from loginSender, which no route knows: only its login
// can take the message to d.
func (r *rig) sendAndCheck(t *testing.T, p program, m mode, d destination, big bool) {
	s := send{
		addr:     r.addr,
		security: m.security,
		mech:     m.mech,
		from:     d.sender,
		subject:  fmt.Sprintf("matrix %s %s %s %s", p.name, m.name, d.name, sizeName(big)),
		in:       r.in,
		caFile:   r.caFile,
		dir:      t.TempDir(),
		shared:   r.dir,
	}
	if m.security == "tls" {
		s.addr = r.smtpsAddr
	}
	want := expected{subject: s.subject, protocol: m.protocol()}
	if m.mech != "" {
		s.user, s.pass, s.from = d.user, password, loginSender
	}
	if big {
		s.attachment, want.attachment = r.in.attachment, r.in.data
	}
	want.from = s.from
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run(t, p.command(ctx, t, s))
	checkMessage(t, r.arrived(t, d, s.subject), want)
}
