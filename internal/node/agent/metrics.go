package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"pullgate.dev/pullgate/internal/node/imagepull"
)

type metrics struct {
	pulls     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	bytes     prometheus.Counter
	duration  prometheus.Histogram
	cacheHits prometheus.Counter
	corrupt   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullgate_node_image_pulls_total",
			Help: "Image pulls by result (success, failure)."}, []string{"result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullgate_node_image_pull_failures_total",
			Help: "Failed image pulls by reason."}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullgate_node_image_pull_bytes_total",
			Help: "Bytes downloaded by image pulls."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pullgate_node_image_pull_duration_seconds",
			Help: "Wall time of image pulls.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 15)}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullgate_node_image_cache_hits_total",
			Help: "Images a pod used from the node's store without pulling."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullgate_node_corrupt_blobs_total",
			Help: "Blobs found on the node not matching their digest or size; each was removed and fetched again."}),
	}
	if reg != nil {
		reg.MustRegister(m.pulls, m.failures, m.bytes, m.duration, m.cacheHits, m.corrupt)
	}
	return m
}

func (m *metrics) pulled(took time.Duration, transferred int64, err *imagepull.Error) {
	m.duration.Observe(took.Seconds())
	m.bytes.Add(float64(transferred))
	if err != nil {
		m.pulls.WithLabelValues("failure").Inc()
		m.failures.WithLabelValues(err.Reason).Inc()
		return
	}
	m.pulls.WithLabelValues("success").Inc()
}

func (m *metrics) failure(reason string) { m.failures.WithLabelValues(reason).Inc() }

func (m *metrics) cacheHit() { m.cacheHits.Inc() }
