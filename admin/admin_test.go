package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/relaymail/relay/internal/testpeer"
	"github.com/relaymail/relay/spool"
)

func TestIndexShowsProfiles(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.sendSMTP("alarms@plant.example.com", "ops@example.com", "Subject: pump 3\n\nPump 3 stopped.")
	h.Up.WaitMessages(t, 1, 10*time.Second)
	testpeer.WaitFor(t, "the delivery to be recorded", 5*time.Second, func() bool {
		return !h.Relay.Stats("mailhost").LastDelivery.IsZero()
	})
	page := h.getOK("/")
	for _, want := range []string{
		`id="profile-mailhost"`, "On-site Exchange", "smtp", "(starttls)", "password", "alarms@plant.example.com",
		`id="profile-local"`, "maildir", `href="/profiles/mailhost/test"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET / lacks %q", want)
		}
	}
	if strings.Contains(page, "/profiles/mailhost/token") {
		t.Errorf("GET / offers Manage token for a password profile")
	}
	row := page[strings.Index(page, `id="profile-mailhost"`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, "ago</time>") {
		t.Errorf("mailhost row shows no last delivery:\n%s", row)
	}

	var profiles []ProfileInfo
	if err := json.Unmarshal([]byte(h.getOK("/api/profiles")), &profiles); err != nil {
		t.Fatal(err)
	}
	if len(profiles) != 2 || profiles[0].Name != "mailhost" || profiles[0].Auth != "password" || profiles[0].LastDelivery.IsZero() || profiles[0].Token != nil {
		t.Errorf("GET /api/profiles = %+v; want mailhost (password, delivered, no token) and local", profiles)
	}
}

// TestIndexQueueDepthAndLastError: with the upstream down, a message waits
// in the queue; the index shows the depth and the connection error.
func TestIndexQueueDepthAndLastError(t *testing.T) {
	h := startHarness(t, harnessOptions{upstreamAddr: testpeer.FreeAddr(t)})
	h.sendSMTP("alarms@plant.example.com", "ops@example.com", "Subject: pump 3\n\nPump 3 stopped.")
	testpeer.WaitFor(t, "a failed attempt", 10*time.Second, func() bool { return h.Relay.Stats("mailhost").LastError != "" })
	var p ProfileInfo
	if err := json.Unmarshal([]byte(h.getOK("/api/profiles/mailhost")), &p); err != nil {
		t.Fatal(err)
	}
	if p.QueueDepth != 1 || !strings.Contains(p.LastError, "connect") {
		t.Fatalf("GET /api/profiles/mailhost = %+v; want queue_depth 1 and a connect error", p)
	}
	page := h.getOK("/")
	row := page[strings.Index(page, `id="profile-mailhost"`):]
	row = row[:strings.Index(row, "</tr>")]
	if !strings.Contains(row, `<td class="num">1</td>`) || !strings.Contains(row, "connect") {
		t.Errorf("mailhost row lacks the depth 1 and the error:\n%s", row)
	}
	if resp, _ := h.get("/api/profiles/nosuch"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /api/profiles/nosuch = %s; want 404", resp.Status)
	}
}

func TestTestPageSends(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	page := h.getOK("/profiles/mailhost/test")
	for _, want := range []string{`name="from" value="alarms@plant.example.com"`, `name="to"`, `name="subject"`, `name="body"`, "Send Test Email"} {
		if !strings.Contains(page, want) {
			t.Errorf("test page lacks %q", want)
		}
	}
	resp, body := h.postForm("/profiles/mailhost/test", "/profiles/mailhost/test", url.Values{
		"from": {"alarms@plant.example.com"}, "to": {"ops@example.com"}, "subject": {"Hello from the test page"}, "body": {"Line one.\r\nLine two."},
	})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Test email sent") || !strings.Contains(body, "250 2.0.0") {
		t.Fatalf("POST test = %s; want 200 with success and the upstream's 250:\n%s", resp.Status, body)
	}
	msgs := h.Up.WaitMessages(t, 1, 5*time.Second)
	m := msgs[0]
	if m.From != "alarms@plant.example.com" || len(m.To) != 1 || m.To[0] != "ops@example.com" || m.User != "alarms@plant.example.com" || !m.TLS {
		t.Errorf("upstream got from %q to %q user %q tls %v; want the form's addresses, logged in, over TLS", m.From, m.To, m.User, m.TLS)
	}
	data := string(m.Data)
	if !strings.Contains(data, "Subject: Hello from the test page\r\n") || !strings.Contains(data, "\r\n\r\nLine one.\r\nLine two.\r\n") {
		t.Errorf("upstream got %q; want the form's subject and body", data)
	}
	if got := len(h.Up.Messages()); got != 1 {
		t.Errorf("upstream holds %d messages; want exactly 1 (sent directly, not also queued)", got)
	}
}

func TestTestPageShowsUpstreamError(t *testing.T) {
	h := startHarness(t, harnessOptions{upstream: testpeer.UpstreamOptions{OnRcpt: func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"}
	}}})
	resp, body := h.postForm("/profiles/mailhost/test", "/profiles/mailhost/test", url.Values{
		"from": {"alarms@plant.example.com"}, "to": {"nobody@example.com"}, "subject": {"x"}, "body": {"x"},
	})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Test email failed") || !strings.Contains(body, "550 5.1.1 mailbox unavailable") {
		t.Fatalf("POST test = %s; want 502 with the upstream's 550:\n%s", resp.Status, body)
	}
	// The form keeps what was typed.
	if !strings.Contains(body, `value="nobody@example.com"`) {
		t.Errorf("the page does not keep the To address")
	}
	var res TestResult
	r2, b2 := h.postJSON("/api/profiles/mailhost/test", `{"to":"nobody@example.com"}`)
	if err := json.Unmarshal([]byte(b2), &res); err != nil || r2.StatusCode != http.StatusBadGateway || res.Sent || !strings.Contains(res.Error, "550 5.1.1") {
		t.Errorf("POST /api/profiles/mailhost/test = %s %s; want 502 with the 550", r2.Status, b2)
	}
}

// TestTestEmailHeaderInjection tries CR, LF and CRLF in every field of the
// test email, through the form and the API: an address with a line break
// is refused, and a subject or body with one never adds a header or a
// recipient.
func TestTestEmailHeaderInjection(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	good := map[string]string{"from": "alarms@plant.example.com", "to": "ops@example.com", "subject": "hello", "body": "body"}
	for _, field := range []string{"from", "to", "subject", "body"} {
		for _, brk := range []string{"\r\n", "\n", "\r"} {
			inj := brk + "Bcc: victim@evil.example" + brk + "X-Injected: yes" + brk + brk + "."
			for _, via := range []string{"form", "api"} {
				before := len(h.Up.Messages())
				fields := map[string]string{}
				for k, v := range good {
					fields[k] = v
				}
				fields[field] += inj
				var status int
				if via == "form" {
					v := url.Values{}
					for k, s := range fields {
						v.Set(k, s)
					}
					resp, _ := h.postForm("/profiles/mailhost/test", "/profiles/mailhost/test", v)
					status = resp.StatusCode
				} else {
					b, _ := json.Marshal(fields)
					resp, _ := h.postJSON("/api/profiles/mailhost/test", string(b))
					status = resp.StatusCode
				}
				msgs := h.Up.Messages()
				switch field {
				case "from", "to":
					if status != http.StatusBadRequest || len(msgs) != before {
						t.Errorf("%s %s with %q: status %d, %d new messages; want 400 and none sent", via, field, brk, status, len(msgs)-before)
					}
					continue
				}
				if status != http.StatusOK || len(msgs) != before+1 {
					t.Errorf("%s %s with %q: status %d, %d new messages; want 200 and one sent", via, field, brk, status, len(msgs)-before)
					continue
				}
				m := msgs[len(msgs)-1]
				if len(m.To) != 1 || m.To[0] != "ops@example.com" {
					t.Errorf("%s %s with %q: recipients %q; want only ops@example.com", via, field, brk, m.To)
				}
				head, _, _ := strings.Cut(string(m.Data), "\r\n\r\n")
				for _, line := range strings.Split(head, "\r\n") {
					if strings.HasPrefix(line, "Bcc:") || strings.HasPrefix(line, "X-Injected:") {
						t.Errorf("%s %s with %q: injected header %q in\n%s", via, field, brk, line, head)
					}
				}
				if strings.Contains(head, "\r\n\r\n") || strings.ContainsAny(strings.ReplaceAll(head, "\r\n", ""), "\r\n") {
					t.Errorf("%s %s with %q: bare line break in the header section:\n%q", via, field, brk, head)
				}
			}
		}
	}
}

func TestFormsNeedCSRFToken(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.getOK("/profiles/mailhost/test") // the browser has its cookie
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	fields := url.Values{"from": {"a@example.com"}, "to": {"b@example.com"}, "subject": {"s"}, "body": {"b"}}
	cases := map[string]string{
		"no token":    fields.Encode(),
		"wrong token": fields.Encode() + "&csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	}
	for name, body := range cases {
		for _, path := range []string{"/profiles/mailhost/test", "/queue/retry", "/queue/delete"} {
			if resp, _ := h.do(http.MethodPost, path, form, strings.NewReader(body)); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %s = %s; want 403", path, name, resp.Status)
			}
		}
	}
	// A token is bound to the browser's cookie: another browser's token
	// does not work with this one's cookie.
	other := startHarnessClient(h)
	token := csrfOf(t, other.getOK("/profiles/mailhost/test"))
	if resp, _ := h.do(http.MethodPost, "/profiles/mailhost/test", form, strings.NewReader(fields.Encode()+"&csrf="+token)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST with another browser's token = %s; want 403", resp.Status)
	}
	// A browser's cross-site request is refused even with a token.
	page := h.getOK("/profiles/mailhost/test")
	cross := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}}
	if resp, _ := h.do(http.MethodPost, "/profiles/mailhost/test", cross, strings.NewReader(fields.Encode()+"&csrf="+url.QueryEscape(csrfOf(t, page)))); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST = %s; want 403", resp.Status)
	}
	// http.CrossOriginProtection refuses a cross-origin write by
	// Sec-Fetch-Site alone, and by Origin alone (browsers before
	// Sec-Fetch-Site), even with a valid token.
	token = url.QueryEscape(csrfOf(t, h.getOK("/profiles/mailhost/test")))
	for name, hdr := range map[string]http.Header{
		"Sec-Fetch-Site: cross-site": {"Sec-Fetch-Site": {"cross-site"}},
		"Sec-Fetch-Site: same-site":  {"Sec-Fetch-Site": {"same-site"}},
		"only Origin":                {"Origin": {"http://evil.example"}},
	} {
		hdr.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, path := range []string{"/profiles/mailhost/test", "/queue/retry", "/profiles/mailhost/token/grant"} {
			if resp, _ := h.do(http.MethodPost, path, hdr, strings.NewReader(fields.Encode()+"&id=all&csrf="+token)); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %s = %s; want 403", path, name, resp.Status)
			}
		}
		if resp, _ := h.do(http.MethodPost, "/api/queue/all/retry", http.Header{"Content-Type": {"application/json"}, "Origin": hdr["Origin"], "Sec-Fetch-Site": hdr["Sec-Fetch-Site"]}, strings.NewReader("{}")); resp.StatusCode != http.StatusForbidden {
			t.Errorf("API POST with %s = %s; want 403", name, resp.Status)
		}
	}
	// API writes need a JSON body: a form post cannot make one.
	if resp, _ := h.do(http.MethodPost, "/api/queue/all/retry", form, strings.NewReader("x=1")); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("form POST to the API = %s; want 415", resp.Status)
	}
	if len(h.Up.Messages()) != 0 {
		t.Errorf("a refused form sent mail")
	}
}

// startHarnessClient is a second browser for h's server.
func startHarnessClient(h *harness) *harness {
	h2 := *h
	jar, _ := cookieJar()
	c := *h.Client
	c.Jar = jar
	h2.Client = &c
	return &h2
}

func TestBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte(adminPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, harnessOptions{passwordHash: string(hash)})
	for _, path := range []string{"/", "/api/profiles", "/metrics", "/profiles/mailhost/test", "/queue", "/api/queue"} {
		resp, _ := h.get(path)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("GET %s without a password = %s; want 401 with a Basic challenge", path, resp.Status)
		}
	}
	// The redirect of a grant needs no password; a forged one fails.
	if resp, _ := h.get("/oauth2/callback?state=forged&code=x"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /oauth2/callback without a password = %s; want 404 (no token manager here), not 401", resp.Status)
	}
	h.password = "wrong"
	if resp, _ := h.get("/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET / with a wrong password = %s; want 401", resp.Status)
	}
	h.password = adminPassword
	h.getOK("/")
	h.getOK("/api/profiles")
	h.password = ""
	if resp, body := h.get("/healthz"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %s %q; want 200 ok without a password", resp.Status, body)
	}
}

// TestHostCheck: without a password, a request whose Host is not a
// loopback name is refused (a DNS rebinding page cannot read the admin).
func TestHostCheck(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	for host, want := range map[string]int{"evil.example:8025": 403, "localhost:8025": 200, "127.0.0.1": 200, "[::1]:8025": 200} {
		req, _ := http.NewRequest(http.MethodGet, h.URL+"/", nil)
		req.Host = host
		resp, err := h.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET / with Host %s = %s; want %d", host, resp.Status, want)
		}
	}
}

func TestQueueAPIAndPage(t *testing.T) {
	h := startHarness(t, harnessOptions{upstreamAddr: testpeer.FreeAddr(t)})
	h.sendSMTP("alarms@plant.example.com", "ops@example.com", "Subject: one\n\n1")
	h.sendSMTP("alarms@plant.example.com", "ops@example.com", "Subject: two\n\n2")
	testpeer.WaitFor(t, "two deferred messages", 10*time.Second, func() bool {
		envs, _ := h.Relay.Queue().List()
		return len(envs) == 2 && envs[0].Attempts > 0 && envs[1].Attempts > 0
	})
	var envs []*spool.Envelope
	if err := json.Unmarshal([]byte(h.getOK("/api/queue")), &envs); err != nil || len(envs) != 2 {
		t.Fatalf("GET /api/queue = %v, %v; want 2 messages", envs, err)
	}
	page := h.getOK("/queue")
	if !strings.Contains(page, envs[0].ID) || !strings.Contains(page, "2 messages queued") || !strings.Contains(page, "connect") {
		t.Errorf("queue page lacks the messages and their error:\n%s", page)
	}

	resp, body := h.postJSON("/api/queue/"+envs[0].ID+"/retry", `{}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"retried": 1`) {
		t.Errorf("retry = %s %s; want 200 retried 1", resp.Status, body)
	}
	resp, body = h.postJSON("/api/queue/all/retry", `{}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"retried": 2`) {
		t.Errorf("retry all = %s %s; want 200 retried 2", resp.Status, body)
	}
	if resp, body = h.postJSON("/api/queue/NOSUCHID0000000000/retry", `{}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("retry unknown = %s %s; want 404", resp.Status, body)
	}
	var id1 string
	testpeer.WaitFor(t, "the retries to end", 10*time.Second, func() bool {
		list, _ := h.Relay.Queue().List()
		for _, e := range list {
			if e.NextAttempt.IsZero() || e.NextAttempt.Before(time.Now()) {
				return false
			}
		}
		id1 = list[0].ID
		return len(list) == 2
	})
	resp, body = h.postJSON("/api/queue/"+id1+"/delete", `{}`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, id1) {
		t.Errorf("delete = %s %s; want 200", resp.Status, body)
	}
	if resp, _ = h.postJSON("/api/queue/"+id1+"/delete", `{}`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("delete again = %s; want 404", resp.Status)
	}
	// The page's Delete button.
	list, _ := h.Relay.Queue().List()
	resp, _ = h.postForm("/queue", "/queue/delete", url.Values{"id": {list[0].ID}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/queue?done=deleted" {
		t.Errorf("form delete = %s → %q; want 303 to /queue?done=deleted", resp.Status, resp.Header.Get("Location"))
	}
	if page := h.getOK("/queue?done=deleted"); !strings.Contains(page, "The queue is empty") || !strings.Contains(page, "was deleted") {
		t.Errorf("queue page after deleting everything:\n%s", page)
	}
}
