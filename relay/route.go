package relay

import (
	"fmt"
	"net/netip"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
)

// Policy decides who may send and which profile a message goes through.
// It is built from one configuration and never changes; a reload makes a
// new one.
type Policy struct {
	cfg      *config.Config
	users    map[string]*config.User
	networks []netip.Prefix
}

// NewPolicy builds the policy of a validated configuration.
func NewPolicy(cfg *config.Config) *Policy {
	p := &Policy{cfg: cfg, users: make(map[string]*config.User), networks: cfg.Server.Networks}
	for _, u := range cfg.Users {
		p.users[u.Name] = u
	}
	return p
}

// User returns the [[users]] entry for a login name, or nil.
func (p *Policy) User(name string) *config.User { return p.users[name] }

// Trusted reports whether a client address may send without AUTH
// (allow_unauthenticated).
func (p *Policy) Trusted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range p.networks {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
)

func policyRefusal(format string, args ...any) *smtp.SMTPError {
	// RFC 3463 X.7.1: delivery not authorized, message refused.
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf(format, args...)}
}

// Select picks the profile for a message from sender, sent by user (nil
// when the client did not log in) from addr. The order is SPEC.md's: the
// user's profile, else the first route whose sender pattern matches, else
// default_profile, else a 550 5.7.1 that names the reason. A client that is
// neither logged in nor in allow_unauthenticated gets 530 5.7.0.
func (p *Policy) Select(user *config.User, addr netip.Addr, sender string) (*config.Profile, *smtp.SMTPError) {
	if user != nil {
		if len(user.Senders) > 0 && !matchAny(user.Senders, sender) {
			return nil, policyRefusal("Sender <%s> is not allowed for user %s", sender, user.Name)
		}
		return p.cfg.Profile(user.Profile), nil
	}
	if !p.Trusted(addr) {
		return nil, errAuthRequired
	}
	for _, r := range p.cfg.Routes {
		if r.Pattern.Match(sender) {
			return p.cfg.Profile(r.Profile), nil
		}
	}
	if p.cfg.Server.DefaultProfile != "" {
		return p.cfg.Profile(p.cfg.Server.DefaultProfile), nil
	}
	if sender == "" {
		return nil, policyRefusal("No profile for the null sender: no route matches and there is no default_profile")
	}
	return nil, policyRefusal("No profile for sender <%s>: no route matches and there is no default_profile", sender)
}

func matchAny(patterns []config.Pattern, addr string) bool {
	for _, pat := range patterns {
		if pat.Match(addr) {
			return true
		}
	}
	return false
}
