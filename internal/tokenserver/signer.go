package tokenserver

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"

	"pullgate.dev/pullgate/internal/registryauth"
)

// Signer issues registry tokens signed with an ES256 key. The key's ID is its JWK
// thumbprint, which is what the registry looks it up by in the JWKS.
type Signer struct {
	key    *ecdsa.PrivateKey
	keyID  string
	signer jose.Signer
}

// NewSigner signs with key (P-256).
func NewSigner(key *ecdsa.PrivateKey) (*Signer, error) {
	kid := token.GetJWKThumbprint(key.Public())
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	return &Signer{key: key, keyID: kid, signer: s}, nil
}

// JWKS is the public key set the registry verifies tokens with.
func (s *Signer) JWKS() []byte {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: s.key.Public(), KeyID: s.keyID, Algorithm: string(jose.ES256), Use: "sig"}}}
	data, _ := json.Marshal(set)
	return data
}

// Sign issues a token for subject (in groups) with access to resources, valid from
// now for lifetime.
func (s *Signer) Sign(issuer, subject string, groups []string, audience string, access []*token.ResourceActions, now time.Time, lifetime time.Duration) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	if access == nil {
		access = []*token.ResourceActions{}
	}
	set := token.ClaimSet{
		Issuer:     issuer,
		Subject:    subject,
		Audience:   token.AudienceList{audience},
		Expiration: now.Add(lifetime).Unix(),
		NotBefore:  now.Add(-time.Minute).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      hex.EncodeToString(jti),
		Access:     access,
	}
	payload, err := json.Marshal(registryauth.Claims{ClaimSet: set, Groups: groups})
	if err != nil {
		return "", err
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
