package admin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/oauth"
)

// findChromium returns Debian's chromium (or $RELAY_CHROMIUM), or "".
func findChromium() string {
	if p := os.Getenv("RELAY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactsDir is where the browser test saves its screenshots:
// $RELAY_ARTIFACTS/admin, or a temporary directory.
func artifactsDir(t *testing.T) string {
	dir := t.TempDir()
	if base := os.Getenv("RELAY_ARTIFACTS"); base != "" {
		dir = filepath.Join(base, "admin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBrowser drives Debian's chromium through the seed's pages in one
// browser session: Refresh Token on a client-credentials profile, Grant New
// Token on an interactive one through the authorization server's consent
// page and back, and Send Test Email, whose mail the loopback upstream
// must receive exactly. It saves a screenshot of each page.
func TestBrowser(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium not found (apt-get install chromium, as .ci/run does, or set RELAY_CHROMIUM): the browser test does not run")
	}
	as := testpeer.StartAuthServer(t, testpeer.AuthOptions{RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}, ClientSecret: clientSecret})
	// Mail to later@example.com waits in the queue (451), for the queue page.
	h := startHarness(t, harnessOptions{auth: as, upstream: testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		if to == "later@example.com" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy, try later"}
		}
		return nil
	}}})
	b := newBrowser(t, chromium)
	ctx, shot, text, do := b.ctx, b.shot, b.text, b.do
	shots := b.shots

	// The profiles.
	do("open the profiles", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#profile-o365")), shot("01-profiles.png"))

	// Manage Token of the client-credentials profile: Refresh Token.
	do("open o365's Manage Token page", chromedp.Navigate(h.URL+"/profiles/o365/token"), chromedp.WaitVisible(chromedp.CSS("#refresh")), shot("02-token-o365-absent.png"))
	if got := text("#token-state"); got != "absent" {
		t.Errorf("o365 token state before a refresh: %q; want absent", got)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#grant").length`)); n != 0 {
		t.Errorf("o365 (client credentials) offers Grant New Token")
	}
	do("click Refresh Token", chromedp.Click(chromedp.CSS("#refresh")), chromedp.WaitVisible(chromedp.CSS(".notice.ok")), shot("03-token-o365-refreshed.png"))
	if got := text("#token-state"); got != "valid" {
		t.Errorf("o365 token state after Refresh Token: %q; want valid", got)
	}
	if got := text("#token-expiry"); !strings.Contains(got, "in 59m") {
		t.Errorf("o365 token expiry %q; want in about an hour", got)
	}

	// Manage Token of the interactive profile: Grant New Token, consent,
	// back to the page with a valid token.
	do("open gmail's Manage Token page", chromedp.Navigate(h.URL+"/profiles/gmail/token"), chromedp.WaitVisible(chromedp.CSS("#grant")), shot("04-token-gmail-invalid.png"))
	if got := text("#token-state"); got != "invalid" {
		t.Errorf("gmail token state before a grant: %q; want invalid", got)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#refresh").length`)); n != 0 {
		t.Errorf("gmail without a refresh token offers Refresh Token")
	}
	do("click Grant New Token", chromedp.Click(chromedp.CSS("#grant")), chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`)), shot("05-consent.png"))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.HasPrefix(loc, as.AuthURL) {
		t.Errorf("Grant New Token went to %s; want the authorization server %s", loc, as.AuthURL)
	}
	do("click Allow", chromedp.Click(chromedp.CSS(`button[value="approve"]`)), chromedp.WaitVisible(chromedp.CSS(".notice.ok")), shot("06-token-gmail-granted.png"))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != h.URL+"/profiles/gmail/token?done=granted" {
		t.Errorf("after consent the browser is at %s; want gmail's Manage Token page", loc)
	}
	if got := text("#token-state"); got != "valid" {
		t.Errorf("gmail token state after the grant: %q; want valid", got)
	}
	if got := text("#refresh-token"); got != "held" {
		t.Errorf("gmail refresh token after the grant: %q; want held", got)
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#refresh").length`)); n != 1 {
		t.Errorf("gmail with a refresh token does not offer Refresh Token")
	}

	// Send Test Email through the OAuth2 profile.
	const to, subject, body = "ops@example.com", "Browser test email", "Sent by the browser test."
	do("open o365's test page", chromedp.Navigate(h.URL+"/profiles/o365/test"), chromedp.WaitVisible(chromedp.CSS("#send")))
	if from, _ := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#from"))); from != "alarms@example.com" {
		t.Errorf("From is filled with %q; want the profile's username", from)
	}
	do("fill the form",
		chromedp.SendKeys(chromedp.CSS("#to"), to),
		chromedp.Clear(chromedp.CSS("#subject")), chromedp.SendKeys(chromedp.CSS("#subject"), subject),
		chromedp.Clear(chromedp.CSS("#body")), chromedp.SendKeys(chromedp.CSS("#body"), body),
		shot("07-test-form.png"))
	do("click Send Test Email", chromedp.Click(chromedp.CSS("#send")), chromedp.WaitVisible(chromedp.CSS("#result")), shot("08-test-sent.png"))
	if got := text("#result"); !strings.Contains(got, "test email sent") || !strings.Contains(got, "250 2.0.0") {
		t.Errorf("result under the button: %q; want success with the upstream's 250", got)
	}
	msgs := h.Up.WaitMessages(t, 1, 5*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("upstream received %d messages; want exactly 1", len(msgs))
	}
	m := msgs[0]
	data := string(m.Data)
	if m.From != "alarms@example.com" || len(m.To) != 1 || m.To[0] != to || m.User != "alarms@example.com" || h.Up.Logins(oauth.XOAUTH2) != 1 ||
		!strings.Contains(data, "\r\nSubject: "+subject+"\r\n") || !strings.HasSuffix(data, "\r\n\r\n"+body+"\r\n") || !strings.Contains(data, "\r\nTo: <"+to+">\r\n") {
		t.Errorf("upstream received from %q to %q as %q:\n%s\nwant exactly the form's mail, sent with XOAUTH2", m.From, m.To, m.User, data)
	}

	// A refused client: the page shows the authorization server's error.
	if err := as.SetTokenFailure(testpeer.AuthFailInvalid); err != nil {
		t.Fatal(err)
	}
	do("click Refresh Token with a refused client", chromedp.Navigate(h.URL+"/profiles/o365/token"), chromedp.WaitVisible(chromedp.CSS("#refresh")),
		chromedp.Click(chromedp.CSS("#refresh")), chromedp.WaitVisible(chromedp.CSS("#token-error")), shot("09-token-o365-refused.png"))
	if got := text("#token-error"); !strings.Contains(got, "invalid_client: client authentication failed (test switch).") {
		t.Errorf("problem shown after a refused refresh: %q; want the server's error text", got)
	}

	// The queue: one message waits after a 451; Retry sends it again.
	h.sendSMTP("alarms@plant.example.com", "later@example.com", "Subject: later\n\nlater")
	testpeer.WaitFor(t, "a deferred message", 10*time.Second, func() bool {
		envs, _ := h.Relay.Queue().List()
		return len(envs) == 1 && envs[0].Attempts == 1
	})
	do("open the queue", chromedp.Navigate(h.URL+"/queue"), chromedp.WaitVisible(chromedp.CSS("td.actions button")), shot("10-queue.png"))
	do("click Retry", chromedp.Click(chromedp.CSS("td.actions button")), chromedp.WaitVisible(chromedp.CSS(".notice.ok")), shot("11-queue-retried.png"))
	testpeer.WaitFor(t, "the second attempt", 10*time.Second, func() bool {
		envs, _ := h.Relay.Queue().List()
		return len(envs) == 1 && envs[0].Attempts == 2
	})
	do("open the profiles again", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#profile-o365")), shot("12-profiles-after.png"))
	t.Logf("screenshots in %s", shots)
}

// browserSession is one headless chromium for a test, with helpers that
// save screenshots, read an element's text and fail the test with the
// page's HTML.
type browserSession struct {
	ctx   context.Context
	shots string
	shot  func(name string) chromedp.Action[chromedp.Void]
	text  func(sel string) string
	do    func(what string, steps ...chromedp.Action[chromedp.Void])
}

func newBrowser(t *testing.T, chromium string) *browserSession {
	shots := artifactsDir(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelCtx)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name), png, 0o644)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		// The badges are upper case by CSS only.
		return strings.ToLower(strings.TrimSpace(s))
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, html)
		}
	}
	return &browserSession{ctx: ctx, shots: shots, shot: shot, text: text, do: do}
}
