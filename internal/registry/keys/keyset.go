// Package keys keeps what every replica of the registry and token service must
// share in one Secret: the keys registry tokens are signed with and distribution's
// HTTP secret (which signs upload state). Whichever replica comes first creates the
// Secret (a Create, so two replicas never make two different sets); every replica
// watches it. Rotation adds a key that every replica verifies at once and signs with
// only after Propagation, and keeps the old key verifying until the longest token it
// signed has expired.
package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Where the keys are kept, and the Secret's data keys.
const (
	Namespace = "pullgate-system"
	Name      = "pullgate-registry-keys"

	dataKeys       = "signing-keys.json"
	dataHTTPSecret = "http-secret"
)

// Timing of a rotation.
const (
	// Propagation is how long a new key only verifies before it signs, so that every
	// replica's watch has delivered it before any token signed with it is presented.
	Propagation = 15 * time.Second
	// Overlap is how long a replaced key still verifies after its successor starts
	// signing: the longest token it signed (tokenauth.MaxLifetime), plus a minute
	// for a replica whose watch lags and a minute of clock skew.
	Overlap = tokenauth.MaxLifetime + 2*time.Minute
)

// Key is one token signing key.
type Key struct {
	ID string
	// SignFrom is when the key starts signing; until then it only verifies.
	SignFrom time.Time
	Private  *ecdsa.PrivateKey
}

// Set is the shared keys: token signing keys, oldest first, and the HTTP secret.
type Set struct {
	Keys       []Key
	HTTPSecret string
}

// New makes a set with one key that signs at once and a random HTTP secret.
func New(now time.Time) (*Set, error) {
	key, err := newKey(now)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return &Set{Keys: []Key{key}, HTTPSecret: hex.EncodeToString(secret)}, nil
}

func newKey(signFrom time.Time) (Key, error) {
	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: token.GetJWKThumbprint(private.Public()), SignFrom: signFrom.UTC().Truncate(time.Second), Private: private}, nil
}

// Signing is the key that signs at now: the newest whose SignFrom has passed (the
// oldest if none has, which only a clock far behind the rotating one sees).
func (s *Set) Signing(now time.Time) Key {
	signing := s.Keys[0]
	for _, k := range s.Keys[1:] {
		if !k.SignFrom.After(now) {
			signing = k
		}
	}
	return signing
}

// Verifying is the keys a token may be signed with at now: every key, except those
// whose successor has signed for longer than Overlap.
func (s *Set) Verifying(now time.Time) []Key {
	var keys []Key
	for i, k := range s.Keys {
		if i+1 < len(s.Keys) && now.Sub(s.Keys[i+1].SignFrom) > Overlap {
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// Rotate adds a key that signs from now+propagation and drops the keys that no
// longer verify.
func (s *Set) Rotate(now time.Time, propagation time.Duration) (*Set, error) {
	key, err := newKey(now.Add(propagation))
	if err != nil {
		return nil, err
	}
	return &Set{Keys: append(s.Verifying(now), key), HTTPSecret: s.HTTPSecret}, nil
}

// NextChange is when Verifying or Signing will next give another answer after now,
// or the zero time if never without another rotation.
func (s *Set) NextChange(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, k := range s.Keys[1:] {
		consider(k.SignFrom)
		consider(k.SignFrom.Add(Overlap).Add(time.Second))
	}
	return next
}

// JWKS is the public keys that verify at now, as the registry reads them.
func (s *Set) JWKS(now time.Time) []byte {
	set := jose.JSONWebKeySet{}
	for _, k := range s.Verifying(now) {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
	}
	data, _ := json.Marshal(set)
	return data
}

// Equal reports whether two sets hold the same keys and secret.
func (s *Set) Equal(o *Set) bool {
	if s == nil || o == nil || s.HTTPSecret != o.HTTPSecret || len(s.Keys) != len(o.Keys) {
		return s == o
	}
	for i := range s.Keys {
		if s.Keys[i].ID != o.Keys[i].ID || !s.Keys[i].SignFrom.Equal(o.Keys[i].SignFrom) {
			return false
		}
	}
	return true
}

// storedKey is a Key as the Secret holds it.
type storedKey struct {
	ID       string    `json:"id"`
	SignFrom time.Time `json:"signFrom"`
	Key      string    `json:"key"` // PKCS#8 PEM
}

// Encode is the Secret data of s.
func (s *Set) Encode() (map[string][]byte, error) {
	stored := make([]storedKey, 0, len(s.Keys))
	for _, k := range s.Keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return nil, err
		}
		stored = append(stored, storedKey{ID: k.ID, SignFrom: k.SignFrom, Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	}
	keys, err := json.MarshalIndent(stored, "", "  ")
	if err != nil {
		return nil, err
	}
	return map[string][]byte{dataKeys: keys, dataHTTPSecret: []byte(s.HTTPSecret)}, nil
}

// Decode reads Secret data. Its errors name the field at fault, never a key's value.
func Decode(data map[string][]byte) (*Set, error) {
	secret := string(data[dataHTTPSecret])
	if len(secret) < 32 {
		return nil, fmt.Errorf("data[%s]: want at least 32 characters", dataHTTPSecret)
	}
	var stored []storedKey
	if err := json.Unmarshal(data[dataKeys], &stored); err != nil {
		return nil, fmt.Errorf("data[%s]: not a JSON list of keys: %w", dataKeys, err)
	}
	if len(stored) == 0 {
		return nil, fmt.Errorf("data[%s]: no key", dataKeys)
	}
	set := &Set{HTTPSecret: secret}
	for i, sk := range stored {
		field := fmt.Sprintf("data[%s][%d]", dataKeys, i)
		block, _ := pem.Decode([]byte(sk.Key))
		if block == nil {
			return nil, fmt.Errorf("%s.key: not PEM", field)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s.key: not a PKCS#8 private key", field)
		}
		private, ok := parsed.(*ecdsa.PrivateKey)
		if !ok || private.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s.key: want a P-256 ECDSA key", field)
		}
		if id := token.GetJWKThumbprint(private.Public()); sk.ID != id {
			return nil, fmt.Errorf("%s.id: %q is not the key's thumbprint", field, sk.ID)
		}
		if i > 0 && sk.SignFrom.Before(set.Keys[i-1].SignFrom) {
			return nil, errors.New(field + ".signFrom: keys must be oldest first")
		}
		set.Keys = append(set.Keys, Key{ID: sk.ID, SignFrom: sk.SignFrom, Private: private})
	}
	return set, nil
}
