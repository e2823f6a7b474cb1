package tokenauth

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
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

// Token is what a registry token says: who it is for (Subject, in Groups), what it
// grants (Access), who issued it for which registry (Issuer, Audience), and from
// when (IssuedAt) for how long (Lifetime).
type Token struct {
	Issuer, Subject, Audience string
	Groups                    []string
	Access                    []*token.ResourceActions
	IssuedAt                  time.Time
	Lifetime                  time.Duration
}

// Sign issues t, signed. Its clock starts a minute early, for clocks that lag.
func (s *Signer) Sign(t Token) (string, error) {
	issuer, subject, groups, audience, access, now, lifetime := t.Issuer, t.Subject, t.Groups, t.Audience, t.Access, t.IssuedAt, t.Lifetime
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
	payload, err := json.Marshal(Claims{ClaimSet: set, Groups: groups})
	if err != nil {
		return "", err
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
