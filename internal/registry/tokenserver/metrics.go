package tokenserver

import (
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts token requests by outcome and actions granted and denied.
type Metrics struct {
	requests *prometheus.CounterVec
	actions  *prometheus.CounterVec
}

// NewMetrics registers the token service's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pullgate", Subsystem: "token", Name: "requests_total",
			Help: "Token requests by result: issued, unauthenticated, rate_limited, bad_scope.",
		}, []string{"result"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pullgate", Subsystem: "token", Name: "actions_total",
			Help: "Actions asked for in token requests, by decision: granted or denied.",
		}, []string{"decision"}),
	}
	reg.MustRegister(m.requests, m.actions)
	return m
}

func (m *Metrics) observeRequest(result string) {
	if m != nil {
		m.requests.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) observeGrants(access []*token.ResourceActions, denied int) {
	if m == nil {
		return
	}
	granted := 0
	for _, a := range access {
		granted += len(a.Actions)
	}
	m.actions.WithLabelValues("granted").Add(float64(granted))
	m.actions.WithLabelValues("denied").Add(float64(denied))
}
