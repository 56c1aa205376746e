package oauth

import (
	"log/slog"
	"regexp"
	"strconv"
	"strings"
)

// hint is one usual misconfiguration: how to recognise its error, and the
// one line that tells a person what to change.
type hint struct {
	// aadsts is an Entra error number ("AADSTS7000218"), found anywhere
	// in the text; code is an OAuth2 error code (RFC 6749 §5.2, RFC 8628
	// §3.5) or an SMTP reply "535 5.7.3" (code and enhanced code).
	aadsts, code string
	// contains, if set, must also appear in the text (case-insensitive).
	contains string
	text     string
}

// hints is the one table of hints: the token page, `relay token status`,
// the test page and the log all look here. Entra first: its errors carry
// an OAuth2 code too, and the AADSTS number says more.
var hints = []hint{
	{aadsts: "AADSTS7000218", text: `Entra wants a client credential: turn on "Allow public client flows" (app registration > Authentication) for device code sign-in, or give the client a secret or certificate`},
	{aadsts: "AADSTS700025", text: `the app is a public client in Entra: remove client_secret and client_certificate_file from this client, or turn off "Allow public client flows"`},
	{aadsts: "AADSTS7000215", text: `wrong client secret: copy the secret's Value (not its Secret ID) from Certificates & secrets, or create a new one if it expired`},
	{aadsts: "AADSTS700027", text: `Entra does not know this certificate: upload client_certificate_file under the app registration's Certificates & secrets > Certificates`},
	{aadsts: "AADSTS700024", text: `the client assertion is outside its valid time: check this machine's clock (NTP); relay signs assertions valid for 5 minutes`},
	{aadsts: "AADSTS50011", text: `the redirect URI is not registered: add relay's redirect URL to the app registration (Authentication), or use a registered loopback URL and paste the address the browser ends on`},
	{aadsts: "AADSTS65001", text: `consent is missing: an administrator grants admin consent for the app's API permissions, or the user consents at the next sign-in`},
	{aadsts: "AADSTS9001023", text: `client credentials need the directory's tenant ID: set tenant to it, not "common" or "organizations"`},
	{aadsts: "AADSTS50059", text: `no tenant given: set tenant to the directory (tenant) ID`},
	{aadsts: "AADSTS700016", text: `Entra knows no app with this client_id in this tenant: check client_id and tenant`},
	{code: "unauthorized_client", text: `Google: domain-wide delegation is missing for this scope: Admin console > Security > API controls > Domain-wide delegation, add the service account's client ID with https://mail.google.com/`},
	{code: "invalid_grant", contains: "Invalid email or User ID", text: `Google: the profile's username is not a user of the Workspace domain: set username to an existing mailbox, never the service account's own address`},
	{code: "authorization_declined", text: `the sign-in was declined: start it again and accept`},
	{code: "access_denied", text: `the sign-in was declined: start it again and accept`},
	{code: "expired_token", text: `the code expired before anyone signed in: start the sign-in again and enter the code within its lifetime`},
	{code: "bad_verification_code", text: `the code entered was not the one relay showed: start the sign-in again`},
	// SMTP replies after a valid token (Exchange Online, Google).
	{code: "535 5.7.3", text: `Exchange took the token but not the login: register the app's service principal in Exchange (New-ServicePrincipal) and give it the mailbox (Add-MailboxPermission); see docs/oauth2.md`},
	{code: "535 5.7.139", text: `SMTP AUTH is disabled for this mailbox or the tenant: Set-CASMailbox -Identity MAILBOX -SmtpClientAuthenticationDisabled $false`},
	{code: "554 5.2.0", contains: "SendAsDenied", text: `the From address is not the profile's mailbox (username) and it has no Send As right: send from the mailbox, or grant Send As`},
	{code: "535 5.7.8", contains: "BadCredentials", text: `Google refused the token or the user: check that username is the mailbox the token was issued for, and the scope https://mail.google.com/`},
}

var aadstsRe = regexp.MustCompile(`AADSTS\d+`)

// TokenHint returns the one-line hint for an authorization server's
// error code and description, or "".
func TokenHint(code, description string) string {
	return lookup(code, code+" "+description)
}

// ErrorHint returns the hint for a recorded error text of the form
// "code: description" (Status.LastError, TokenError.Reason), or "".
func ErrorHint(text string) string {
	code, _, _ := strings.Cut(text, ":")
	return lookup(strings.TrimSpace(code), text)
}

// SMTPHint returns the hint for an upstream SMTP reply (code, enhanced
// code such as "5.7.3", text), or "". Call it where the upstream's error
// is shown or logged.
func SMTPHint(code int, enhanced, text string) string {
	if code == 0 {
		return ""
	}
	key := strconv.Itoa(code)
	if enhanced != "" {
		key += " " + enhanced
	}
	return lookup(key, text)
}

// replyRe finds an SMTP reply with its enhanced code in an error text
// ("upstream smtp.office365.com:587: AUTH: 535 5.7.3 Authentication
// unsuccessful").
var replyRe = regexp.MustCompile(`\b([245]\d\d)[ -]([245]\.\d{1,3}\.\d{1,3})\b`)

// ReplyHint returns the hint for the upstream SMTP reply that an error
// text carries, or "": SMTPHint for the places that hold only the text
// (a logged error, a profile's last error).
func ReplyHint(text string) string {
	m := replyRe.FindStringSubmatchIndex(text)
	if m == nil {
		return ""
	}
	code, _ := strconv.Atoi(text[m[2]:m[3]])
	return SMTPHint(code, text[m[4]:m[5]], text[m[1]:])
}

// ReplyHintAttr is the log attribute "hint" for the upstream reply that
// an error text carries, or an empty attribute, which log/slog leaves out.
func ReplyHintAttr(text string) slog.Attr {
	if h := ReplyHint(text); h != "" {
		return slog.String("hint", h)
	}
	return slog.Attr{}
}

func lookup(code, text string) string {
	numbers := aadstsRe.FindAllString(text, -1)
	for _, h := range hints {
		switch {
		case h.aadsts != "":
			for _, n := range numbers {
				if n == h.aadsts {
					return h.text
				}
			}
		case h.code == code && (h.contains == "" || strings.Contains(strings.ToLower(text), strings.ToLower(h.contains))):
			if h.code == "unauthorized_client" && len(numbers) > 0 {
				continue // Entra's own unauthorized_client has its number
			}
			return h.text
		}
	}
	return ""
}
