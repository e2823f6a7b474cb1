package tokenserver

import (
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"
)

// FailureLimiter limits failed logins per credential and per client address, so that
// a guesser is slowed without locking anyone else out:
//
//   - each failure takes a token from the bucket of the credential that failed (a
//     hash of it) and from the bucket of the address it came from;
//   - a credential whose own bucket is empty is answered 429 before it is checked;
//   - an address whose bucket is empty is answered 429 too, except for a credential
//     that is known good, or one that may be (a well-formed token never seen failing)
//     while the shared review budget lasts: a good client behind the same address —
//     a NAT, a load balancer, a node — is never refused for others' failures, and
//     the API server never reviews more than the budget's rate for a flood.
//
// Good logins take nothing.
type FailureLimiter struct {
	// Rate is how many failures per second a credential or address regains; Burst
	// how many it may make at once.
	Rate  rate.Limit
	Burst int
	// ReviewRate and ReviewBurst bound the credentials reviewed from limited
	// addresses, all addresses together.
	ReviewRate  rate.Limit
	ReviewBurst int

	once      sync.Once
	mu        sync.Mutex
	addresses *lru.Cache // client address → *rate.Limiter
	creds     *lru.Cache // sha256 of the credential → *rate.Limiter
	budget    *rate.Limiter
}

// Default allowances: 20 failures at once, then 2 a second, per credential and per
// address; from limited addresses, 20 reviews at once, then 10 a second in all.
const (
	DefaultFailureRate  = rate.Limit(2)
	DefaultFailureBurst = 20
	DefaultReviewRate   = rate.Limit(10)
	DefaultReviewBurst  = 20
)

func (l *FailureLimiter) init() {
	l.once.Do(func() {
		if l.Rate == 0 {
			l.Rate, l.Burst = DefaultFailureRate, DefaultFailureBurst
		}
		if l.ReviewRate == 0 {
			l.ReviewRate, l.ReviewBurst = DefaultReviewRate, DefaultReviewBurst
		}
		l.addresses, l.creds = lru.New(16384), lru.New(65536)
		l.budget = rate.NewLimiter(l.ReviewRate, l.ReviewBurst)
	})
}

func (l *FailureLimiter) bucket(cache *lru.Cache, key any) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := cache.Get(key); ok {
		return b.(*rate.Limiter)
	}
	b := rate.NewLimiter(l.Rate, l.Burst)
	cache.Add(key, b)
	return b
}

// attempt is one login as the limiter sees it.
type attempt struct {
	address    string
	credential [32]byte
	// hasCredential: a password or token was given.
	hasCredential bool
}

func attemptOf(r *http.Request) attempt {
	a := attempt{address: clientHost(r)}
	if _, password, ok := r.BasicAuth(); ok && password != "" {
		a.credential, a.hasCredential = sha256.Sum256([]byte(password)), true
	}
	return a
}

// Verdict is the limiter's answer before a credential is checked.
type Verdict struct {
	// Limited: answer 429, and come back after Wait.
	Limited bool
	Wait    time.Duration
	// Why names what is limited: "credential" or "address".
	Why string
}

// Check says whether a login may be checked now. knownGood says the credential was
// accepted recently; wellFormed that it looks like a token the API server could
// accept.
func (l *FailureLimiter) Check(r *http.Request, knownGood, wellFormed bool) Verdict {
	if l == nil || knownGood {
		return Verdict{}
	}
	l.init()
	a := attemptOf(r)
	if a.hasCredential {
		if b := l.bucket(l.creds, a.credential); b.Tokens() < 1 {
			return Verdict{Limited: true, Wait: l.wait(b), Why: "credential"}
		}
	}
	b := l.bucket(l.addresses, a.address)
	if b.Tokens() >= 1 {
		return Verdict{}
	}
	if a.hasCredential && wellFormed && l.budget.Allow() {
		return Verdict{}
	}
	return Verdict{Limited: true, Wait: l.wait(b), Why: "address"}
}

func (l *FailureLimiter) wait(b *rate.Limiter) time.Duration {
	return time.Duration(float64(time.Second) * (1 - b.Tokens()) / float64(l.Rate))
}

// Failed takes one failure from r's credential and from its address.
func (l *FailureLimiter) Failed(r *http.Request) {
	if l == nil {
		return
	}
	l.init()
	a := attemptOf(r)
	if a.hasCredential {
		l.bucket(l.creds, a.credential).Allow()
	}
	l.bucket(l.addresses, a.address).Allow()
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(math.Max(1, math.Ceil(d.Seconds()))))
}

// clientHost is r's address without its port.
func clientHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
