package registry

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// instrument counts requests, their latency and the bytes sent, by method and code.
func instrument(reg prometheus.Registerer, next http.Handler) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pullgate", Subsystem: "registry", Name: "http_requests_total", Help: "Registry HTTP requests.",
	}, []string{"method", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pullgate", Subsystem: "registry", Name: "http_request_duration_seconds", Help: "Registry HTTP request latency.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"method"})
	bytes := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pullgate", Subsystem: "registry", Name: "http_response_size_bytes", Help: "Registry HTTP response sizes.",
		Buckets: prometheus.ExponentialBuckets(256, 8, 9),
	}, []string{"method"})
	reg.MustRegister(requests, latency, bytes)
	return promhttp.InstrumentHandlerCounter(requests,
		promhttp.InstrumentHandlerDuration(latency,
			promhttp.InstrumentHandlerResponseSize(bytes, next)))
}
