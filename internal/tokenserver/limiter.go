package tokenserver

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"
)

// FailureLimiter limits how often one client address may fail to log in: each
// failure takes a token from the address's bucket, and an address with an empty
// bucket is answered 429 with Retry-After before any credential is checked. Good
// logins take nothing, so clients that log in correctly are never slowed, and a
// client whose credential is known to be good passes even from a limited address.
type FailureLimiter struct {
	// Rate is how many failures per second an address regains; Burst how many it may
	// make at once.
	Rate  rate.Limit
	Burst int

	once    sync.Once
	mu      sync.Mutex
	buckets *lru.Cache // client address → *rate.Limiter
}

// Default failure allowance: 20 at once, then 2 a second.
const (
	DefaultFailureRate  = rate.Limit(2)
	DefaultFailureBurst = 20
)

func (l *FailureLimiter) bucket(r *http.Request) *rate.Limiter {
	l.once.Do(func() {
		if l.Rate == 0 {
			l.Rate, l.Burst = DefaultFailureRate, DefaultFailureBurst
		}
		l.buckets = lru.New(16384)
	})
	addr := r.RemoteAddr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets.Get(addr); ok {
		return b.(*rate.Limiter)
	}
	b := rate.NewLimiter(l.Rate, l.Burst)
	l.buckets.Add(addr, b)
	return b
}

// Limited reports whether r's address has no failures left, and when to come back.
func (l *FailureLimiter) Limited(r *http.Request) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	b := l.bucket(r)
	if b.Tokens() >= 1 {
		return 0, false
	}
	wait := time.Duration(float64(time.Second) * (1 - b.Tokens()) / float64(l.Rate))
	return wait, true
}

// Failed takes one failure from r's address.
func (l *FailureLimiter) Failed(r *http.Request) {
	if l != nil {
		l.bucket(r).Allow()
	}
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Ceil(d.Seconds()))))
}
