package admin

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relaymail/relay/oauth"
	"github.com/relaymail/relay/relay"
)

// Metrics are relay's Prometheus metrics. Message counters and the
// delivery latency come from relay's events (pass Observe as
// relay.Options.Events); queue and token gauges are read from the running
// parts at each scrape.
type Metrics struct {
	reg *prometheus.Registry

	received, delivered, deferred, bounced *prometheus.CounterVec
	latency                                *prometheus.HistogramVec
}

// NewMetrics makes the message counters and the latency histogram, on a
// registry of their own with Go's and the process's collectors.
func NewMetrics() *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "relay", Name: name, Help: help}, []string{"profile"})
	}
	m := &Metrics{
		reg:       prometheus.NewRegistry(),
		received:  counter("messages_received_total", "Messages accepted from clients: queued, or handed to a direct profile's upstream."),
		delivered: counter("messages_delivered_total", "Messages the upstream accepted for at least one recipient."),
		deferred:  counter("messages_deferred_total", "Delivery attempts that left recipients for a later retry (4xx, network, token); in direct mode the client got the 4xx."),
		bounced:   counter("messages_bounced_total", "Messages with recipients that failed for good (5xx or max_lifetime); in direct mode the client got the 5xx."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "relay",
			Name:      "upstream_delivery_duration_seconds",
			Help:      "Duration of one upstream transaction (MAIL FROM to the end of DATA), by profile and result (ok or error).",
			Buckets:   []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"profile", "result"}),
	}
	m.reg.MustRegister(m.received, m.delivered, m.deferred, m.bounced, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts one message event; it is relay.Options.Events.
func (m *Metrics) Observe(e relay.Event) {
	switch e.Kind {
	case relay.EventReceived:
		m.received.WithLabelValues(e.Profile).Inc()
	case relay.EventDelivered:
		m.delivered.WithLabelValues(e.Profile).Inc()
	case relay.EventDeferred:
		m.deferred.WithLabelValues(e.Profile).Inc()
	case relay.EventBounced:
		m.bounced.WithLabelValues(e.Profile).Inc()
	case relay.EventAttempt:
		result := "ok"
		if e.Err != "" {
			result = "error"
		}
		m.latency.WithLabelValues(e.Profile, result).Observe(e.Duration.Seconds())
	}
}

// register adds the collectors that read s's state at scrape time, and
// starts the counters of every configured profile at zero so that rates
// exist before the first message.
func (m *Metrics) register(s *Server) error {
	for _, p := range s.relay.Config().Profiles {
		for _, c := range []*prometheus.CounterVec{m.received, m.delivered, m.deferred, m.bounced} {
			c.WithLabelValues(p.Name)
		}
	}
	return m.reg.Register(&stateCollector{s: s})
}

func (m *Metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: nil})
}

var (
	descQueueMessages = prometheus.NewDesc("relay_queue_messages", "Messages in the queue, by profile.", []string{"profile"}, nil)
	descQueueOldest   = prometheus.NewDesc("relay_queue_oldest_message_age_seconds", "Age of the oldest queued message; 0 when the queue is empty.", nil, nil)
	descTokenRequests = prometheus.NewDesc("relay_oauth2_token_requests_total", "Requests to the token endpoint since the server started, by profile.", []string{"profile"}, nil)
	descTokenFailures = prometheus.NewDesc("relay_oauth2_token_failures_total", "Failed requests to the token endpoint since the server started, by profile.", []string{"profile"}, nil)
	descTokenExpiry   = prometheus.NewDesc("relay_oauth2_token_expiry_seconds", "Seconds until the access token expires (negative: expired); absent without a token or for tokens that never expire.", []string{"profile"}, nil)
	descTokenState    = prometheus.NewDesc("relay_oauth2_token_state", "1 for the token's current state (valid, expired, absent, invalid), 0 for the others.", []string{"profile", "state"}, nil)
)

// stateCollector reads the queue and the token states at scrape time.
type stateCollector struct{ s *Server }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueMessages, descQueueOldest, descTokenRequests, descTokenFailures, descTokenExpiry, descTokenState} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.now()
	depth := s.queueDepths()
	for _, p := range s.relay.Config().Profiles {
		ch <- prometheus.MustNewConstMetric(descQueueMessages, prometheus.GaugeValue, float64(depth[p.Name]), p.Name)
	}
	age := 0.0
	if q := s.relay.Queue(); q != nil {
		if oldest := q.Oldest(); !oldest.IsZero() {
			age = max(now.Sub(oldest).Seconds(), 0)
		}
	}
	ch <- prometheus.MustNewConstMetric(descQueueOldest, prometheus.GaugeValue, age)
	if s.tokens == nil {
		return
	}
	for _, st := range s.tokens.Statuses() {
		ch <- prometheus.MustNewConstMetric(descTokenRequests, prometheus.CounterValue, float64(st.Requests), st.Profile)
		ch <- prometheus.MustNewConstMetric(descTokenFailures, prometheus.CounterValue, float64(st.Failures), st.Profile)
		if !st.Expiry.IsZero() {
			ch <- prometheus.MustNewConstMetric(descTokenExpiry, prometheus.GaugeValue, st.Expiry.Sub(now).Round(time.Millisecond).Seconds(), st.Profile)
		}
		for _, state := range []string{oauth.StateValid, oauth.StateExpired, oauth.StateAbsent, oauth.StateInvalid} {
			v := 0.0
			if st.State == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descTokenState, prometheus.GaugeValue, v, st.Profile, state)
		}
	}
}
