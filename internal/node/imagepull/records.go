package imagepull

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// PullRecord says who has pulled one manifest on this node (Kubernetes KEP-2535,
// "ensure secret pulled images"): anyone, when it was pulled without credentials, or
// the holders of the recorded credentials. A pod whose credentials are not recorded
// may use the cached image only once its own credentials are shown to pull it.
type PullRecord struct {
	Anonymous   bool     `json:"anonymous,omitempty"`
	Credentials []string `json:"credentials,omitempty"`
}

// Allows reports whether a pod holding credentials ids may use the image unverified.
func (r PullRecord) Allows(ids []string) bool {
	if r.Anonymous {
		return true
	}
	for _, id := range ids {
		if slices.Contains(r.Credentials, id) {
			return true
		}
	}
	return false
}

func (s *Store) recordsPath() string { return filepath.Join(s.dir, "pulls.json") }

func (s *Store) readRecords() (map[string]PullRecord, error) {
	records := map[string]PullRecord{}
	data, err := os.ReadFile(s.recordsPath())
	if errors.Is(err, os.ErrNotExist) {
		return records, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &records); err != nil {
		return nil, fmt.Errorf("image store %s: pulls.json: %w", s.dir, err)
	}
	return records, nil
}

// Recorded returns the pull record of manifest d.
func (s *Store) Recorded(d v1.Hash) PullRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	records, err := s.readRecords()
	if err != nil {
		return PullRecord{}
	}
	return records[d.String()]
}

// Record notes that the credential id (empty: none) pulled manifest d.
func (s *Store) Record(d v1.Hash, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	records, err := s.readRecords()
	if err != nil {
		return err
	}
	r := records[d.String()]
	switch {
	case id == "":
		r.Anonymous = true
	case slices.Contains(r.Credentials, id):
		return nil
	default:
		r.Credentials = append(r.Credentials, id)
	}
	records[d.String()] = r
	data, err := json.MarshalIndent(records, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Replace(s.recordsPath(), data, 0o600)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
