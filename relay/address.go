package relay

import (
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// checkAddress refuses an envelope address that relay could not pass on
// exactly as the client meant it. go-smtp's parser is lenient: it keeps
// NUL, bare CR and other control characters, lets the domain run to the
// next space or '>', and drops the quotes of a quoted local part, so
// <"x> NOTIFY=SUCCESS"@example.com> reaches the session as
// `x> NOTIFY=SUCCESS@example.com`, which written into an upstream's RCPT
// command would add a parameter. What passes here is a plain mailbox that
// can be written back verbatim:
//
//   - valid UTF-8 without control characters or spaces;
//   - non-ASCII only when the client gave SMTPUTF8 (RFC 6531 §3.4);
//   - one "@" between a local part of atext and dots (RFC 5321 §4.1.2
//     Dot-string, with RFC 6531 §3.3's UTF-8; dots are not checked for
//     position, as some legacy senders put two in a row) and a domain of
//     letters, digits, hyphens and underscores in dot-separated labels, or
//     an address literal (RFC 5321 §4.1.3).
//
// An empty address (the null reverse-path) is the caller's business. The
// reply does not echo the address: it may hold bytes that do not belong
// in a reply.
func checkAddress(addr string, smtputf8, sender bool) *smtp.SMTPError {
	refuse := func(ec smtp.EnhancedCode, why string) *smtp.SMTPError {
		// RFC 5321 §4.2.2: 553 mailbox name not allowed (syntax).
		// RFC 3463: X.1.7 bad sender's, X.1.3 bad destination mailbox
		// address syntax.
		role := "Recipient"
		if sender {
			role = "Sender"
		}
		return &smtp.SMTPError{Code: 553, EnhancedCode: ec, Message: role + " address " + why}
	}
	syntax := smtp.EnhancedCode{5, 1, 3}
	if sender {
		syntax = smtp.EnhancedCode{5, 1, 7}
	}
	if !utf8.ValidString(addr) {
		return refuse(syntax, "is not valid UTF-8")
	}
	ascii := true
	for _, r := range addr {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return refuse(syntax, "contains a control character")
		case r == ' ':
			return refuse(syntax, "contains a space")
		case r >= 0x80:
			ascii = false
		}
	}
	if !ascii && !smtputf8 {
		// RFC 6531 §3.5: 553 X.6.7, non-ASCII addresses not permitted.
		return refuse(smtp.EnhancedCode{5, 6, 7}, "is not ASCII: use the SMTPUTF8 parameter of MAIL")
	}
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return refuse(syntax, "must have the form local-part@domain")
	}
	for _, r := range local {
		if !isAtext(r) && r != '.' {
			return refuse(syntax, "has a character in its local part that would need quoting")
		}
	}
	if !validDomain(domain) {
		return refuse(syntax, "has an invalid domain")
	}
	return nil
}

// isAtext: RFC 5322 §3.2.3 atext, and RFC 6531 §3.3's UTF8-non-ascii.
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r >= 0x80:
		return true
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// validDomain: dot-separated labels (RFC 5321 §4.1.2 sub-domain, leniently
// with underscores, and U-labels), or an address literal (§4.1.3).
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		lit, ok := strings.CutSuffix(d[1:], "]")
		if !ok {
			return false
		}
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			return err == nil && a.Is6() && a.Zone() == ""
		}
		a, err := netip.ParseAddr(lit)
		return err == nil && a.Is4()
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r >= 0x80) {
				return false
			}
		}
	}
	return true
}
