package imagepull

import (
	"crypto/rand"
	"io"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// What trusting no blob costs on the node, for a 64 MiB layer in the page cache: the
// stat every use makes (size, and whether the file changed since it was hashed), and
// the full hash a blob gets before its first use by a process, after any write to its
// file, after each Reverify, and on every pull. The anchor, in the same run, is
// reading the blob without hashing it: the I/O any verification must pay.
func BenchmarkBlobVerification(b *testing.B) {
	const size = 64 << 20
	s, err := OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	d, _, err := v1.SHA256(bytesReader(data))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.PutVerified(d, data); err != nil {
		b.Fatal(err)
	}
	b.Run("stat-and-stamp(every-use)", func(b *testing.B) {
		for b.Loop() {
			if !s.verifiedBlob(d, size, true) {
				b.Fatal("blob did not verify")
			}
		}
	})
	b.Run("sha256(first-use,pull)", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			s.Reverify()
			if !s.verifiedBlob(d, size, true) {
				b.Fatal("blob did not verify")
			}
		}
	})
	b.Run("read-only(anchor)", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.Open(s.blobPath(d))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
