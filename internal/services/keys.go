package services

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"pullgate.dev/pullgate/internal/atomicfile"
	"pullgate.dev/pullgate/internal/pki"
	"pullgate.dev/pullgate/internal/tokenserver"
)

// keys are what the token service signs with and the registry verifies with, and the
// secret distribution signs upload state with.
type keys struct {
	signer     *tokenserver.Signer
	jwksFile   string
	httpSecret string
}

// loadKeys reads, or makes once, the token signing key (in the PKI directory) and the
// HTTP secret (in dir), and writes the public keys to dir/jwks.json.
func loadKeys(ca *pki.Dir, dir string) (*keys, error) {
	key, err := ca.SigningKey("registry-token")
	if err != nil {
		return nil, err
	}
	signer, err := tokenserver.NewSigner(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry directory %s: %w", dir, err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := atomicfile.Replace(jwksFile, signer.JWKS(), 0o644); err != nil {
		return nil, err
	}
	secret, err := HTTPSecret(filepath.Join(dir, "http-secret"))
	if err != nil {
		return nil, err
	}
	return &keys{signer: signer, jwksFile: jwksFile, httpSecret: secret}, nil
}

// HTTPSecret reads, or makes once, the secret distribution signs upload state with,
// so an upload survives a restart.
func HTTPSecret(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		return string(data), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(b)
	if err := atomicfile.Create(path, []byte(secret), 0o600); err != nil {
		return "", err
	}
	return secret, nil
}
