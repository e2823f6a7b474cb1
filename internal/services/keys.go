package services

import (
	"crypto/rand"
	"encoding/hex"
	"os"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// HTTPSecret reads, or makes once, the secret a standalone registry signs upload
// state with, so an upload survives a restart. (The integrated registry's replicas
// share theirs through package keys.)
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
