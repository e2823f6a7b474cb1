package imagepull

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// refNameAnnotation names an image in index.json, as in any OCI image layout.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// Store is an OCI image layout on disk: blobs/sha256/<hex>, index.json naming each
// pulled image by its reference, and pulls.json recording with which credentials each
// image was pulled. A blob is stored once for every image that has it. A blob is
// written to <hex>.partial and renamed only after its digest and size check out, so a
// partial blob is never used, and a later pull resumes it from where it stopped.
type Store struct {
	dir    string
	mu     sync.Mutex // index.json, pulls.json, verified and corruptions
	flight singleflight.Group
	// OnCorrupt, when set, is called for each blob found corrupt (and removed).
	OnCorrupt func(v1.Hash)

	verified    map[string]fileStamp // blobs hashed since the last Reverify, as their files were then
	corruptions []Corruption
}

// OpenStore opens, or creates, the layout in dir.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("image store %s: %w", dir, err)
	}
	layout := filepath.Join(dir, "oci-layout")
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		if err := atomicfile.Replace(layout, []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return nil, err
		}
	}
	s := &Store{dir: dir, verified: map[string]fileStamp{}}
	if _, err := s.readIndex(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir is the layout's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) blobPath(d v1.Hash) string {
	return filepath.Join(s.dir, "blobs", d.Algorithm, d.Hex)
}

// HasBlob reports whether blob d is stored, whole and matching its digest (hashed
// once per process).
func (s *Store) HasBlob(d v1.Hash) bool {
	return s.verifiedBlob(d, -1, true)
}

// ReadBlob returns the stored blob d.
func (s *Store) ReadBlob(d v1.Hash) ([]byte, error) {
	return os.ReadFile(s.blobPath(d))
}

// Fetch opens blob content from offset on. It returns the offset the body really
// starts at: 0 when the server ignored the range.
type Fetch func(offset int64) (body io.ReadCloser, start int64, err error)

// PutBlob stores blob d of size bytes, fetching only what is missing, and returns how
// many bytes it transferred. A blob already stored is hashed first, and fetched again
// if it does not match. Concurrent calls for one blob share one download.
func (s *Store) PutBlob(d v1.Hash, size int64, fetch Fetch) (int64, error) {
	v, err, _ := s.flight.Do(d.String(), func() (any, error) {
		if s.verifiedBlob(d, size, false) {
			return int64(0), nil
		}
		return s.download(d, size, fetch)
	})
	n, _ := v.(int64)
	return n, err
}

// ErrDigestMismatch means a blob's bytes do not have the digest they were fetched by.
var ErrDigestMismatch = errors.New("content does not match its digest")

// TransferError is a download that stopped part way; the part is kept for the next pull.
type TransferError struct {
	Blob        v1.Hash
	Have, Total int64
	Err         error
}

func (e *TransferError) Error() string {
	total := "an unknown size"
	if e.Total >= 0 {
		total = units.BytesSize(float64(e.Total))
	}
	return fmt.Sprintf("downloading blob %s stopped after %s of %s: %v", e.Blob, units.BytesSize(float64(e.Have)), total, e.Err)
}

func (e *TransferError) Unwrap() error { return e.Err }

func (s *Store) download(d v1.Hash, size int64, fetch Fetch) (int64, error) {
	if d.Algorithm != "sha256" {
		return 0, fmt.Errorf("blob %s: only sha256 digests are supported", d)
	}
	partial := s.blobPath(d) + ".partial"
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// What an earlier pull left is hashed again, never trusted.
	h := sha256.New()
	have, err := io.Copy(h, f)
	if err != nil {
		return 0, err
	}
	if size >= 0 && have > size {
		if have, h, err = truncate(f); err != nil {
			return 0, err
		}
	}
	body, start, err := fetch(have)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	if start != have {
		if have, h, err = truncate(f); err != nil {
			return 0, err
		}
	}
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if err != nil {
		return n, &TransferError{Blob: d, Have: have + n, Total: size, Err: err}
	}
	have += n
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex || (size >= 0 && have != size) {
		f.Close()
		os.Remove(partial)
		return n, fmt.Errorf("blob %s: %w (got sha256:%s, %d bytes of %d)", d, ErrDigestMismatch, got, have, size)
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	if err := os.Rename(partial, s.blobPath(d)); err != nil {
		return n, err
	}
	// Stamped after the rename (which moves the change time), through the file this
	// process wrote and hashed.
	if info, err := f.Stat(); err == nil {
		s.remember(d, stampOf(info))
	}
	return n, nil
}

func truncate(f *os.File) (int64, hash.Hash, error) {
	if err := f.Truncate(0); err != nil {
		return 0, nil, err
	}
	_, err := f.Seek(0, io.SeekStart)
	return 0, sha256.New(), err
}

// PutVerified stores small content already in memory, checking its digest.
func (s *Store) PutVerified(d v1.Hash, data []byte) error {
	sum := sha256.Sum256(data)
	if d.Algorithm != "sha256" || hex.EncodeToString(sum[:]) != d.Hex {
		return fmt.Errorf("blob %s: %w", d, ErrDigestMismatch)
	}
	if s.HasBlob(d) {
		return nil
	}
	err := atomicfile.Create(s.blobPath(d), data, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	return err
}

// Image is an image as the store knows it.
type Image struct {
	Ref        string
	Descriptor v1.Descriptor // of the manifest pulled for this node's platform
}

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

func (s *Store) readIndex() (*v1.IndexManifest, error) {
	data, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json"}, nil
	}
	if err != nil {
		return nil, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("image store %s: index.json: %w", s.dir, err)
	}
	return &idx, nil
}

// Lookup returns the image stored under ref, if its manifest, config and layers are all
// present.
func (s *Store) Lookup(ref string) (Image, bool) {
	s.mu.Lock()
	idx, err := s.readIndex()
	s.mu.Unlock()
	if err != nil {
		return Image{}, false
	}
	for _, d := range idx.Manifests {
		if d.Annotations[refNameAnnotation] == ref && s.complete(d.Digest) {
			return Image{Ref: ref, Descriptor: d}, true
		}
	}
	return Image{}, false
}

// complete reports whether the manifest d and every blob it names are stored, of the
// right size, and (once per process) of the right content.
func (s *Store) complete(d v1.Hash) bool {
	if !s.verifiedBlob(d, -1, true) {
		return false
	}
	data, err := s.ReadBlob(d)
	if err != nil {
		return false
	}
	m, err := v1.ParseManifest(bytesReader(data))
	if err != nil {
		return false
	}
	if !s.verifiedBlob(m.Config.Digest, m.Config.Size, true) {
		return false
	}
	for _, l := range m.Layers {
		if !s.verifiedBlob(l.Digest, l.Size, true) {
			return false
		}
	}
	return true
}

// Tag names the stored manifest desc ref in index.json.
func (s *Store) Tag(ref string, desc v1.Descriptor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	desc.Annotations = map[string]string{refNameAnnotation: ref}
	desc.Platform = nil
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d v1.Descriptor) bool { return d.Annotations[refNameAnnotation] == ref })
	idx.Manifests = append(idx.Manifests, desc)
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Replace(s.indexPath(), data, 0o644)
}

// Images lists what index.json names.
func (s *Store) Images() ([]Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, d := range idx.Manifests {
		out = append(out, Image{Ref: d.Annotations[refNameAnnotation], Descriptor: d})
	}
	return out, nil
}
