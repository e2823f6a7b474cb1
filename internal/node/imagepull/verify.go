package imagepull

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A completed blob is not trusted for being there. Its file is looked at (stat) every
// time it is used; its content is hashed before its first use by this process (so
// after every restart), again whenever its file changed since it was last hashed —
// size, modification or change time, inode — again after Reverify (every 24 hours:
// what a write through the kernel cannot hide, the disk itself can), and always by a
// pull (a pull never keeps a blob it did not check). A blob that fails is removed,
// counted, and fetched again.

// Corruption is a blob found not to match its digest, and removed.
type Corruption struct {
	Blob   v1.Hash
	Reason string
}

// fileStamp is what the kernel says of a file that any write to it changes: the change
// time (ctime) moves on every write, truncation, rename or chmod, and cannot be set
// back from user space, unlike the modification time.
type fileStamp struct {
	size         int64
	mtime, ctime syscall.Timespec
	ino, dev     uint64
}

func stampOf(info os.FileInfo) fileStamp {
	st := fileStamp{size: info.Size()}
	if sys, ok := info.Sys().(*syscall.Stat_t); ok {
		st.mtime, st.ctime, st.ino, st.dev = sys.Mtim, sys.Ctim, sys.Ino, uint64(sys.Dev)
	}
	return st
}

// verifiedBlob reports whether blob d is stored with size bytes (size < 0: any) and,
// unless quick is set and its file is exactly as it was when it was last hashed (since
// the last Reverify), hashes it. A blob that fails is removed and noted.
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
	stamp := stampOf(info)
	s.mu.Lock()
	seen, ok := s.verified[d.String()]
	s.mu.Unlock()
	if quick && ok && seen == stamp {
		return true
	}
	ok, err = hashMatches(path, d)
	if err != nil {
		return false
	}
	if !ok {
		s.corrupt(d, "its content does not hash to its digest")
		return false
	}
	// The stamp taken before hashing: a write during the hash changes the file's
	// ctime, so its next use hashes again.
	s.remember(d, stamp)
	return true
}

// remember notes that blob d hashed right while its file was as stamp says.
func (s *Store) remember(d v1.Hash, stamp fileStamp) {
	s.mu.Lock()
	s.verified[d.String()] = stamp
	s.mu.Unlock()
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
	s.verified = map[string]fileStamp{}
}
