package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// headlessHarness serves the profiles o365 and gmail of as and dev of ds
// with one real token manager.
func headlessHarness(t *testing.T, as *testpeer.AuthServer, ds *testpeer.DeviceServer) *harness {
	return startHarness(t, harnessOptions{auth: as, extra: ds.ProfileTOML(), tokens: func(t *testing.T, cfg *config.Config) Tokens {
		m, err := oauth.NewManager(cfg, oauth.Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}})
}

// consentElsewhere consents as a browser on another machine would, and
// returns the address it ended on without following it.
func consentElsewhere(t *testing.T, as *testpeer.AuthServer, authURL string) string {
	t.Helper()
	jar, _ := cookieJar()
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := as.AuthConsent(context.Background(), c, authURL, true)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.Contains(loc, "code=") {
		t.Fatalf("consent ended at %s %q; want a redirect with a code", resp.Status, loc)
	}
	return loc
}

func tokenJSON(t *testing.T, h *harness, profile string) oauth.Status {
	t.Helper()
	var st oauth.Status
	if err := json.Unmarshal([]byte(h.getOK("/api/tokens/"+profile)), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDeviceAPI: POST grant {"method": "device"} answers the code and the
// URI; GET shows the grant pending, then granted once the person signs in.
func TestDeviceAPI(t *testing.T) {
	as := testpeer.StartAuthServer(t, testpeer.AuthOptions{RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}, ClientSecret: clientSecret})
	ds := testpeer.StartDeviceServer(t, testpeer.DeviceOptions{})
	h := headlessHarness(t, as, ds)

	resp, body := h.postJSON("/api/tokens/dev/grant", `{"method":"device"}`)
	var d oauth.DeviceGrant
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil || d.UserCode == "" || d.Method != "device" ||
		d.VerificationURI != ds.URL+"/device" || d.Interval != 1 || d.ExpiresIn < 50 || !strings.Contains(d.Message, d.UserCode) {
		t.Fatalf("POST grant device = %s %s; want the user code, the URI, interval and expires_in", resp.Status, body)
	}
	if st := tokenJSON(t, h, "dev"); st.Device == nil || st.Device.Method != "device" || st.Device.State != oauth.DevicePending || st.Device.UserCode != d.UserCode {
		t.Fatalf("GET token during the sign-in: %+v; want grant pending with the user code", st.Device)
	}
	if err := ds.Approve(d.UserCode, "operator@example.com"); err != nil {
		t.Fatal(err)
	}
	testpeer.WaitFor(t, "the device grant", 20*time.Second, func() bool {
		st := tokenJSON(t, h, "dev")
		return st.Device != nil && st.Device.State == oauth.DeviceGranted && st.State == oauth.StateValid && st.HasRefreshToken
	})

	// A client credentials profile has nothing to sign in.
	if resp, body := h.postJSON("/api/tokens/o365/grant", `{"method":"device"}`); resp.StatusCode != http.StatusConflict {
		t.Errorf("POST grant device of a client credentials profile = %s %s; want 409", resp.Status, body)
	}
	if resp, body := h.postJSON("/api/tokens/dev/grant", `{"method":"telepathy"}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST grant with an unknown method = %s %s; want 400", resp.Status, body)
	}
}

// TestGrantCompleteAPI: the pasted redirect with a wrong state is refused
// and spends nothing; the right one completes the grant.
func TestGrantCompleteAPI(t *testing.T) {
	as := testpeer.StartAuthServer(t, testpeer.AuthOptions{RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}, ClientSecret: clientSecret})
	ds := testpeer.StartDeviceServer(t, testpeer.DeviceOptions{})
	h := headlessHarness(t, as, ds)

	resp, body := h.postJSON("/api/tokens/gmail/grant", `{}`)
	var g GrantStart
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &g) != nil || g.AuthURL == "" {
		t.Fatalf("POST grant = %s %s", resp.Status, body)
	}
	loc := consentElsewhere(t, as, g.AuthURL)
	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("state", "x"+q.Get("state"))
	u.RawQuery = q.Encode()
	wrong, _ := json.Marshal(map[string]string{"redirect_url": u.String()})
	resp, body = h.postJSON("/api/tokens/gmail/grant/complete", string(wrong))
	var c GrantComplete
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(body), &c) != nil || c.Granted || !strings.Contains(c.Error, "state") {
		t.Fatalf("POST grant/complete with a wrong state = %s %s; want 400 with granted false and the state named", resp.Status, body)
	}
	right, _ := json.Marshal(map[string]string{"redirect_url": loc})
	resp, body = h.postJSON("/api/tokens/gmail/grant/complete", string(right))
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &c) != nil || !c.Granted {
		t.Fatalf("POST grant/complete = %s %s; want granted", resp.Status, body)
	}
	if st := tokenJSON(t, h, "gmail"); st.State != oauth.StateValid || !st.HasRefreshToken {
		t.Errorf("gmail after the pasted redirect: %+v; want a valid token and a refresh token", st)
	}
}

// TestBrowserHeadless drives chromium through the device code button and
// the paste field of the Manage Token page, with screenshots.
func TestBrowserHeadless(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium not found (apt-get install chromium, as .ci/run does, or set RELAY_CHROMIUM): the browser test does not run")
	}
	as := testpeer.StartAuthServer(t, testpeer.AuthOptions{RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}, ClientSecret: clientSecret})
	ds := testpeer.StartDeviceServer(t, testpeer.DeviceOptions{})
	h := headlessHarness(t, as, ds)
	b := newBrowser(t, chromium)
	ctx, shot, text, do := b.ctx, b.shot, b.text, b.do

	// Device code: the button shows the code and the URI; once the person
	// signs in elsewhere the page (which looks again by itself) says so.
	do("open dev's Manage Token page", chromedp.Navigate(h.URL+"/profiles/dev/token"), chromedp.WaitVisible(chromedp.CSS("#grant-device")), shot("21-token-dev.png"))
	do("click Sign In with a Code", chromedp.Click(chromedp.CSS("#grant-device")), chromedp.WaitVisible(chromedp.CSS("#device-code")), shot("22-device-code.png"))
	code := strings.ToUpper(text("#device-code"))
	if href, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#device-uri"), "href")); href.Value != ds.URL+"/device" {
		t.Errorf("verification link %q; want %s", href.Value, ds.URL+"/device")
	}
	if err := ds.Approve(code, "operator@example.com"); err != nil {
		t.Fatalf("approve the code shown on the page (%q): %v", code, err)
	}
	do("wait for the sign-in", chromedp.WaitVisible(chromedp.CSS(".device.granted")), shot("23-device-granted.png"))
	if got := text("#token-state"); got != "valid" {
		t.Errorf("dev token state after the device sign-in: %q; want valid", got)
	}

	// Pasted redirect: a wrong address is refused on the page, the right
	// one completes the grant.
	authURL, err := h.Tokens.StartGrant("gmail")
	if err != nil {
		t.Fatal(err)
	}
	loc := consentElsewhere(t, as, authURL)
	do("open gmail's Manage Token page", chromedp.Navigate(h.URL+"/profiles/gmail/token"), chromedp.WaitVisible(chromedp.CSS("#paste-url")))
	do("paste a forged address", chromedp.SendKeys(chromedp.CSS("#paste-url"), strings.Replace(loc, "state=", "state=x", 1)),
		chromedp.Click(chromedp.CSS("#paste")), chromedp.WaitVisible(chromedp.CSS(".notice.error")), shot("24-paste-refused.png"))
	if got := text("#token-state"); got == "valid" {
		t.Errorf("a forged address made the token valid")
	}
	do("paste the address", chromedp.Clear(chromedp.CSS("#paste-url")), chromedp.SendKeys(chromedp.CSS("#paste-url"), loc), shot("25-paste-filled.png"),
		chromedp.Click(chromedp.CSS("#paste")), chromedp.WaitVisible(chromedp.CSS(".notice.ok")), shot("26-paste-granted.png"))
	if got := text("#token-state"); got != "valid" {
		t.Errorf("gmail token state after the pasted redirect: %q; want valid", got)
	}
	t.Logf("screenshots in %s", b.shots)
}

// TestUpstreamErrorHint: Exchange's SendAsDenied after a valid login is
// shown with its hint on the test page's result and in the API.
func TestUpstreamErrorHint(t *testing.T) {
	h := startHarness(t, harnessOptions{upstream: testpeer.UpstreamOptions{OnData: func(testpeer.Message) error {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 2, 0}, Message: "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception"}
	}}})
	resp, body := h.postJSON("/api/profiles/mailhost/test", `{"to":"ops@example.com","from":"someone.else@example.com"}`)
	var res TestResult
	if resp.StatusCode != http.StatusBadGateway || json.Unmarshal([]byte(body), &res) != nil || !strings.Contains(res.Error, "554 5.2.0") || !strings.Contains(res.Hint, "Send As") {
		t.Fatalf("test email refused with SendAsDenied = %s %s; want 502 with the reply and the Send As hint", resp.Status, body)
	}
	resp, page := h.postForm("/profiles/mailhost/test", "/profiles/mailhost/test", url.Values{"to": {"ops@example.com"}, "from": {"someone.else@example.com"}, "subject": {"s"}, "body": {"b"}})
	if !strings.Contains(page, `id="result-hint"`) || !strings.Contains(page, "Send As") {
		t.Errorf("test page after SendAsDenied (%s) shows no hint:\n%s", resp.Status, page)
	}
}
