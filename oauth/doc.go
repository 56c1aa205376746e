// Package oauth obtains, caches, persists and renews the OAuth 2.0 access
// tokens of relay's OAuth2 SMTP profiles, and authenticates with them
// upstream through its XOAUTH2 SASL client.
//
// A Manager holds one TokenSource per OAuth2 profile. Non-interactive
// profiles use the client credentials grant (2-legged); interactive ones
// the authorization code grant with PKCE (3-legged), started with
// StartGrant and finished by CompleteGrant (the admin listener's
// /oauth2/callback serves the redirect), then the refresh token. Each source makes one token request at a time however
// many callers wait, renews refresh_before_expiration ahead of expiry,
// lets callers wait at most access_token_timeout, and keeps its tokens in
// a Store (files under DATA_DIR/tokens by default), so that a restart needs
// no new grant.
//
// No secret (client secret, token, code, verifier) reaches a log line, an
// error or a Status.
package oauth
