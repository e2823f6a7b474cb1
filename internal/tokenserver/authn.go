package tokenserver

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/rbacauthz"
)

// ErrUnauthenticated means the credential is not a valid Kubernetes token.
var ErrUnauthenticated = errors.New("the password is not a valid Kubernetes token")

// Anonymous is who a request without credentials is.
var Anonymous = rbacauthz.User{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}

// TokenReviewer authenticates Kubernetes tokens with the TokenReview API, caching
// answers (by a hash of the token, never the token) for a short time, so a steady
// stream of pulls costs no API round trip per request while a deleted service
// account stops working within CacheTTL.
//
// A token is accepted if it is valid for the API server's own audiences (a user's or
// a service account's token, as OpenShift accepts) or for Audience, the registry's
// (tokens a node agent requests for a pod, and the pull secrets' bound tokens).
type TokenReviewer struct {
	Client   kubernetes.Interface
	CacheTTL time.Duration
	Audience string
	cache    *cache.LRUExpireCache
}

type reviewResult struct {
	user rbacauthz.User
	err  error
}

// NewTokenReviewer caches up to 4096 answers for ttl.
func NewTokenReviewer(client kubernetes.Interface, ttl time.Duration, audience string) *TokenReviewer {
	return &TokenReviewer{Client: client, CacheTTL: ttl, Audience: audience, cache: cache.NewLRUExpireCache(4096)}
}

// Authenticate returns who token belongs to.
func (r *TokenReviewer) Authenticate(ctx context.Context, token string) (rbacauthz.User, error) {
	key := sha256.Sum256([]byte(token))
	if v, ok := r.cache.Get(key); ok {
		res := v.(reviewResult)
		return res.user, res.err
	}
	review, err := r.review(ctx, token, nil)
	if err == nil && !review.Status.Authenticated && r.Audience != "" {
		review, err = r.review(ctx, token, []string{r.Audience})
	}
	if err != nil {
		// Not cached: the API server may be back in a moment.
		return rbacauthz.User{}, fmt.Errorf("reviewing the token with the Kubernetes API: %w", err)
	}
	res := reviewResult{err: ErrUnauthenticated}
	if review.Status.Authenticated {
		res = reviewResult{user: rbacauthz.User{Name: review.Status.User.Username, Groups: review.Status.User.Groups}}
	}
	r.cache.Add(key, res, r.CacheTTL)
	return res.user, res.err
}

func (r *TokenReviewer) review(ctx context.Context, token string, audiences []string) (*authenticationv1.TokenReview, error) {
	return r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
}
