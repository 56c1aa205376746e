package oauth_test

import (
	"strings"
	"testing"

	"github.com/relaymail/relay/oauth"
)

// TestHints holds every error the documentation's troubleshooting table
// names, as the servers word them, and a part of the hint each must get.
func TestHints(t *testing.T) {
	token := []struct{ code, desc, want string }{
		{"invalid_client", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", "Allow public client flows"},
		{"invalid_request", "AADSTS700025: Client is public so neither 'client_assertion' nor 'client_secret' should be presented.", "public client in Entra"},
		{"invalid_client", "AADSTS7000215: Invalid client secret provided.", "wrong client secret"},
		{"invalid_client", "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.", "does not know this certificate"},
		{"invalid_client", "AADSTS700024: Client assertion is not within its valid time range.", "clock"},
		{"invalid_request", "AADSTS50011: The redirect URI 'http://127.0.0.1:8025/oauth2/callback' specified in the request does not match the redirect URIs configured for the application.", "redirect URI is not registered"},
		{"invalid_grant", "AADSTS65001: The user or administrator has not consented to use the application.", "admin consent"},
		{"invalid_request", "AADSTS9001023: The grant type is not supported over the /common or /consumers endpoints.", "tenant ID"},
		{"unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.", "Domain-wide delegation"},
		{"invalid_grant", "Invalid email or User ID", "not a user of the Workspace domain"},
		{"authorization_declined", "AADSTS70000: The user declined", "declined"},
		{"expired_token", "AADSTS70020: The provided value for the input parameter 'device_code' is not valid.", "expired"},
		{"bad_verification_code", "", "not the one relay showed"},
	}
	for _, tt := range token {
		got := oauth.TokenHint(tt.code, tt.desc)
		if !strings.Contains(got, tt.want) {
			t.Errorf("TokenHint(%q, %q) = %q; want it to contain %q", tt.code, tt.desc, got, tt.want)
		}
		if got2 := oauth.ErrorHint(tt.code + ": " + tt.desc); got2 != got {
			t.Errorf("ErrorHint(%q) = %q; want %q, as TokenHint", tt.code+": "+tt.desc, got2, got)
		}
	}
	smtp := []struct {
		code     int
		enhanced string
		text     string
		want     string
	}{
		{535, "5.7.3", "Authentication unsuccessful [SN4PR0401CA0012.namprd04.prod.outlook.com]", "New-ServicePrincipal"},
		{535, "5.7.139", "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.", "SmtpClientAuthenticationDisabled"},
		{554, "5.2.0", "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message", "Send As"},
		{535, "5.7.8", "Username and Password not accepted. BadCredentials", "username is the mailbox"},
	}
	for _, tt := range smtp {
		if got := oauth.SMTPHint(tt.code, tt.enhanced, tt.text); !strings.Contains(got, tt.want) {
			t.Errorf("SMTPHint(%d, %q, %q) = %q; want it to contain %q", tt.code, tt.enhanced, tt.text, got, tt.want)
		}
	}
	for _, tt := range []struct{ text, want string }{
		{"upstream smtp.office365.com:587: AUTH: 535 5.7.3 Authentication unsuccessful [SN4PR0401CA0012.namprd04.prod.outlook.com]", "New-ServicePrincipal"},
		{"upstream smtp.office365.com:587: DATA: 554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", "Send As"},
		{"upstream smtp.office365.com:587: AUTH: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "SmtpClientAuthenticationDisabled"},
	} {
		if got := oauth.ReplyHint(tt.text); !strings.Contains(got, tt.want) {
			t.Errorf("ReplyHint(%q) = %q; want it to contain %q", tt.text, got, tt.want)
		}
	}
	if got := oauth.ReplyHint("upstream mail.example.com:25: RCPT TO: 550 5.1.1 no such user"); got != "" {
		t.Errorf("ReplyHint(550 5.1.1) = %q; want none", got)
	}

	// No hint for what the table does not know, nor for a 554 5.2.0
	// that is not SendAsDenied, nor for Entra's own unauthorized_client.
	none := []string{
		oauth.TokenHint("invalid_grant", "Token has been expired or revoked."),
		oauth.TokenHint("unauthorized_client", "AADSTS700016: Application not found in the directory"),
		oauth.SMTPHint(554, "5.2.0", "mailbox full"),
		oauth.SMTPHint(250, "2.0.0", "OK"),
		oauth.SMTPHint(0, "", ""),
		oauth.ErrorHint("token endpoint answered HTTP 503"),
	}
	for i, got := range none[:1] {
		if got != "" {
			t.Errorf("case %d: hint %q; want none", i, got)
		}
	}
	if got := none[1]; !strings.Contains(got, "client_id and tenant") {
		t.Errorf("Entra unauthorized_client with AADSTS700016: hint %q; want the AADSTS700016 one", got)
	}
	for i, got := range none[2:] {
		if got != "" {
			t.Errorf("case %d: hint %q; want none", i+2, got)
		}
	}
}
