package tokenserver

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/rbacauthz"
)

// ErrUnauthenticated means the credential is not a valid Kubernetes token.
var ErrUnauthenticated = errors.New("the password is not a valid Kubernetes token")

// TokenReviewer authenticates Kubernetes tokens with the TokenReview API: one review
// per distinct token, whose answer (good or bad) is cached by a hash of the token,
// never the token, for CacheTTL. A steady stream of pulls then costs no API round
// trip per request, a deleted service account stops working within CacheTTL, and a
// flood of bad passwords costs at most one review each.
//
// A token is accepted if it is valid for the API server's own audiences (a user's or
// a service account's token, as OpenShift accepts) or for Audience, the registry's
// (tokens a node or the credential provider requests for a pod, and the pull
// secrets' bound tokens). Which of the two a token is for is read from its own "aud"
// claim, so each token is reviewed once, for the audience it names.
type TokenReviewer struct {
	Client   kubernetes.Interface
	CacheTTL time.Duration
	Audience string
	cache    *cache.LRUExpireCache
	inflight singleflight.Group
	reviews  *prometheus.CounterVec
}

type reviewResult struct {
	user rbacauthz.User
	err  error
}

// NewTokenReviewer caches up to 4096 answers for ttl, and counts its reviews in reg
// (when not nil).
func NewTokenReviewer(client kubernetes.Interface, ttl time.Duration, audience string, reg prometheus.Registerer) *TokenReviewer {
	r := &TokenReviewer{Client: client, CacheTTL: ttl, Audience: audience, cache: cache.NewLRUExpireCache(4096),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pullgate", Subsystem: "token", Name: "reviews_total",
			Help: "TokenReviews sent to the Kubernetes API, by result: authenticated, unauthenticated, error.",
		}, []string{"result"})}
	if reg != nil {
		reg.MustRegister(r.reviews)
	}
	return r
}

// Authenticate returns who token belongs to.
func (r *TokenReviewer) Authenticate(ctx context.Context, token string) (rbacauthz.User, error) {
	key := sha256.Sum256([]byte(token))
	if v, ok := r.cache.Get(key); ok {
		res := v.(reviewResult)
		return res.user, res.err
	}
	// Concurrent requests with one token (a client pulling layers in parallel) share
	// one review.
	v, err, _ := r.inflight.Do(string(key[:]), func() (any, error) {
		if v, ok := r.cache.Get(key); ok {
			return v, nil
		}
		review, err := r.review(ctx, token, r.audiencesFor(token))
		if err != nil {
			r.reviews.WithLabelValues("error").Inc()
			// Not cached: the API server may be back in a moment.
			return nil, fmt.Errorf("reviewing the token with the Kubernetes API: %w", err)
		}
		res := reviewResult{err: ErrUnauthenticated}
		if review.Status.Authenticated {
			res = reviewResult{user: rbacauthz.User{Name: review.Status.User.Username, Groups: review.Status.User.Groups}}
			r.reviews.WithLabelValues("authenticated").Inc()
		} else {
			r.reviews.WithLabelValues("unauthenticated").Inc()
		}
		r.cache.Add(key, res, r.CacheTTL)
		return res, nil
	})
	if err != nil {
		return rbacauthz.User{}, err
	}
	res := v.(reviewResult)
	return res.user, res.err
}

// KnownGood reports whether token was authenticated within CacheTTL: such a client is
// never rate-limited for other clients' failures.
func (r *TokenReviewer) KnownGood(token string) bool {
	v, ok := r.cache.Get(sha256.Sum256([]byte(token)))
	return ok && v.(reviewResult).err == nil
}

// WellFormed reports whether token could be one the API server accepts: a signed JWT
// that has not expired. The limiter reviews such a token even from an address that
// keeps failing, within its budget.
func (r *TokenReviewer) WellFormed(token string) bool {
	parsed, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		return false
	}
	var claims jwt.Claims
	if parsed.UnsafeClaimsWithoutVerification(&claims) != nil || claims.Expiry == nil {
		return false
	}
	return claims.Expiry.Time().After(time.Now())
}

// jwtAlgorithms are every algorithm a Kubernetes token may be signed with; the
// signature is not checked here (the API server does that), only the audience read.
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// audiencesFor is the registry's audience for a JWT that names it, else nil: the API
// server's own audiences.
func (r *TokenReviewer) audiencesFor(token string) []string {
	if r.Audience == "" {
		return nil
	}
	parsed, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		return nil
	}
	var claims jwt.Claims
	if parsed.UnsafeClaimsWithoutVerification(&claims) != nil || !slices.Contains([]string(claims.Audience), r.Audience) {
		return nil
	}
	return []string{r.Audience}
}

func (r *TokenReviewer) review(ctx context.Context, token string, audiences []string) (*authenticationv1.TokenReview, error) {
	return r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
}
