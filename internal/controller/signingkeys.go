package controller

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
	"k8s.io/client-go/kubernetes"
)

// signingKeys knows the key IDs the API server signs service account tokens with,
// from its OIDC discovery (/openid/v1/jwks), read at most once a minute. Workers that
// ask while it is being read wait for that one read; none holds a lock across it.
type signingKeys struct {
	// jwks reads the API server's key set.
	jwks  func(ctx context.Context) ([]byte, error)
	fetch singleflight.Group

	mu      sync.Mutex
	ids     map[string]bool
	fetched time.Time
}

// has reports whether kid is still one of the API server's keys. When the keys
// cannot be read, it answers yes: a token is not reissued on a guess.
func (k *signingKeys) has(ctx context.Context, kid string) bool {
	if kid == "" {
		return true
	}
	k.mu.Lock()
	stale := time.Since(k.fetched) > time.Minute
	k.mu.Unlock()
	if stale {
		_, _, _ = k.fetch.Do("jwks", func() (any, error) {
			ids := k.read(ctx)
			k.mu.Lock()
			k.ids, k.fetched = ids, time.Now()
			k.mu.Unlock()
			return nil, nil
		})
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ids == nil || k.ids[kid]
}

// apiServerKeys reads the key set the API server publishes for OIDC discovery.
func apiServerKeys(client kubernetes.Interface) func(ctx context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		return client.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	}
}

// read returns the key IDs the API server publishes, or nil when it cannot say.
func (k *signingKeys) read(ctx context.Context) map[string]bool {
	body, err := k.jwks(ctx)
	var set jose.JSONWebKeySet
	if err != nil || json.Unmarshal(body, &set) != nil {
		return nil
	}
	ids := map[string]bool{}
	for _, key := range set.Keys {
		ids[key.KeyID] = true
	}
	return ids
}

// serviceAccountTokenAlgorithms are those the API server may sign tokens with.
var serviceAccountTokenAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512}

// keyID reads the kid of a JWT's header, without verifying anything.
func keyID(token string) string {
	jws, err := jose.ParseSigned(token, serviceAccountTokenAlgorithms)
	if err != nil || len(jws.Signatures) == 0 {
		return ""
	}
	return jws.Signatures[0].Header.KeyID
}
