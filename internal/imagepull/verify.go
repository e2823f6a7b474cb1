package imagepull

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A completed blob is not trusted for being there. Its size is checked every time
// it is used; its content is hashed before its first use by this process (so after
// every restart), again after Reverify, and always by a pull (a pull never keeps a
// blob it did not check). A blob that fails is removed, counted, and fetched again.

// Corruption is a blob found not to match its digest, and removed.
type Corruption struct {
	Blob   v1.Hash
	Reason string
}

// verifiedBlob reports whether blob d is stored with size bytes (size < 0: any) and,
// unless it was hashed since the last Reverify and quick is set, hashes it. A blob
// that fails is removed and noted.
func (s *Store) verifiedBlob(d v1.Hash, size int64, quick bool) bool {
	path := s.blobPath(d)
	info, err := os.Stat(path)
	if err != nil {
		return false
	}
	if size >= 0 && info.Size() != size {
		s.corrupt(d, "its size on disk is not the size the manifest gives")
		return false
	}
	s.mu.Lock()
	seen := s.verified[d.String()]
	s.mu.Unlock()
	if quick && seen {
		return true
	}
	ok, err := hashMatches(path, d)
	if err != nil {
		return false
	}
	if !ok {
		s.corrupt(d, "its content does not hash to its digest")
		return false
	}
	s.mu.Lock()
	s.verified[d.String()] = true
	s.mu.Unlock()
	return true
}

func hashMatches(path string, d v1.Hash) (bool, error) {
	if d.Algorithm != "sha256" {
		return false, errors.New("only sha256 digests are supported")
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == d.Hex, nil
}

// corrupt removes blob d and notes why.
func (s *Store) corrupt(d v1.Hash, reason string) {
	_ = os.Remove(s.blobPath(d))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.verified, d.String())
	s.corruptions = append(s.corruptions, Corruption{Blob: d, Reason: reason})
	if s.OnCorrupt != nil {
		s.OnCorrupt(d)
	}
}

// TakeCorruptions returns the corruptions found since the last call.
func (s *Store) TakeCorruptions() []Corruption {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.corruptions
	s.corruptions = nil
	return out
}

// Reverify forgets which blobs were hashed: each is hashed again before its next use.
func (s *Store) Reverify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verified = map[string]bool{}
}
