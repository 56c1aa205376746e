package admin

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/relaymail/relay/internal/testpeer"
)

// scrape reads /metrics into series → value ("name{label="v",...}").
func (h *harness) scrape() map[string]float64 {
	h.t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(h.getOK("/metrics")))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			h.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsAfterTraffic sends real mail through relay: one delivered,
// one deferred by a 451, one bounced by a 550 (its bounce is delivered to
// the sender), and checks the series of issue 6.
func TestMetricsAfterTraffic(t *testing.T) {
	h := startHarness(t, harnessOptions{upstream: testpeer.UpstreamOptions{OnRcpt: func(to string) error {
		switch to {
		case "later@example.com":
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
		case "gone@example.com":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}})
	before := h.scrape()
	for _, k := range []string{`relay_messages_received_total{profile="mailhost"}`, `relay_messages_bounced_total{profile="local"}`, `relay_queue_messages{profile="mailhost"}`, `relay_queue_oldest_message_age_seconds`} {
		if v, ok := before[k]; !ok || v != 0 {
			t.Errorf("before traffic %s = %v (present %v); want 0", k, v, ok)
		}
	}
	h.sendSMTP("alarms@plant.example.com", "ops@example.com", "Subject: ok\n\nok")
	h.sendSMTP("alarms@plant.example.com", "later@example.com", "Subject: later\n\nlater")
	h.sendSMTP("alarms@plant.example.com", "gone@example.com", "Subject: gone\n\ngone")
	// The first message and the bounce of the third reach the upstream.
	h.Up.WaitMessages(t, 2, 10*time.Second)
	want := map[string]float64{
		`relay_messages_received_total{profile="mailhost"}`:  3,
		`relay_messages_delivered_total{profile="mailhost"}`: 2,
		`relay_messages_deferred_total{profile="mailhost"}`:  1,
		`relay_messages_bounced_total{profile="mailhost"}`:   1,
		`relay_queue_messages{profile="mailhost"}`:           1,
		`relay_queue_messages{profile="local"}`:              0,
	}
	var m map[string]float64
	testpeer.WaitFor(t, "the metrics to settle", 10*time.Second, func() bool {
		m = h.scrape()
		for k, v := range want {
			if m[k] != v {
				return false
			}
		}
		return true
	})
	if n := m[`relay_upstream_delivery_duration_seconds_count{profile="mailhost",result="ok"}`]; n < 3 {
		t.Errorf("latency histogram counts %v ok transactions; want at least 3", n)
	}
	if _, ok := m[`relay_upstream_delivery_duration_seconds_bucket{profile="mailhost",result="ok",le="+Inf"}`]; !ok {
		t.Errorf("no latency buckets")
	}
	if age := m["relay_queue_oldest_message_age_seconds"]; age <= 0 {
		t.Errorf("oldest message age %v; want > 0 with a message queued", age)
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Errorf("no Go runtime metrics")
	}
}

// TestTokenMetrics: token requests, failures, state and seconds until
// expiry by profile, read from the token manager at scrape time.
func TestTokenMetrics(t *testing.T) {
	h, as := startOAuth(t, testpeer.AuthOptions{})
	if resp, body := h.postJSON("/api/tokens/o365/refresh", `{}`); resp.StatusCode != 200 {
		t.Fatalf("refresh = %s %s", resp.Status, body)
	}
	as.SetTokenFailure(testpeer.AuthFailInvalid)
	h.postJSON("/api/tokens/o365/refresh", `{}`)
	m := h.scrape()
	for k, want := range map[string]float64{
		`relay_oauth2_token_requests_total{profile="o365"}`:         2,
		`relay_oauth2_token_failures_total{profile="o365"}`:         1,
		`relay_oauth2_token_state{profile="o365",state="invalid"}`:  1,
		`relay_oauth2_token_state{profile="o365",state="valid"}`:    0,
		`relay_oauth2_token_requests_total{profile="gmail"}`:        0,
		`relay_oauth2_token_state{profile="gmail",state="invalid"}`: 1,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v); want %v", k, got, ok, want)
		}
	}
	if exp := m[`relay_oauth2_token_expiry_seconds{profile="o365"}`]; exp < 3000 || exp > 3600 {
		t.Errorf("o365 token expires in %v s; want about an hour", exp)
	}
	if _, ok := m[`relay_oauth2_token_expiry_seconds{profile="gmail"}`]; ok {
		t.Errorf("gmail has no token but an expiry metric")
	}
}
