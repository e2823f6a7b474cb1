package controllers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
)

// signingKeys knows the key IDs the API server signs service account tokens with,
// from its OIDC discovery (/openid/v1/jwks), read at most once a minute.
type signingKeys struct {
	client  kubernetes.Interface
	mu      sync.Mutex
	ids     map[string]bool
	fetched time.Time
}

// has reports whether kid is still one of the API server's keys. When the keys
// cannot be read, it answers yes: a token is not reissued on a guess.
func (k *signingKeys) has(ctx context.Context, kid string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.fetched) > time.Minute {
		body, err := k.client.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
		k.fetched = time.Now()
		var jwks struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if err != nil || json.Unmarshal(body, &jwks) != nil {
			k.ids = nil
		} else {
			k.ids = map[string]bool{}
			for _, key := range jwks.Keys {
				k.ids[key.Kid] = true
			}
		}
	}
	return k.ids == nil || kid == "" || k.ids[kid]
}

// keyID reads the kid of a JWT's header, without verifying anything.
func keyID(token string) string {
	header, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &h)
	return h.Kid
}
