package registry

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/sirupsen/logrus"
)

// Reclaimed bytes per second on filesystem storage: 64 untagged images of 1 MiB and
// one tagged image that stays. pullgate's online prune (the 5 s settle that keeps
// pushes in flight safe is set to 1 ms here: it is a wait, not work) beside the
// anchor, distribution's garbage-collect with --delete-untagged, which needs the
// registry read-only, in the same run.
func BenchmarkPruneThroughput(b *testing.B) {
	const images, size = 64, 1 << 20
	setup := func(b *testing.B) *store {
		s := newStoreOn(b, filesystem.New(filesystem.DriverParameters{RootDirectory: b.TempDir(), MaxThreads: 100}))
		app := s.repo("bench/app")
		s.push(app, "keep", strings.Repeat("k", size))
		for i := range images {
			s.push(app, "", fmt.Sprintf("%08d", i)+strings.Repeat("x", size-8))
		}
		return s
	}
	// measure times reclaim on fresh storage, b.N times, and reports bytes per second.
	measure := func(b *testing.B, reclaim func(*store) (int64, error)) {
		var bytes int64
		var took time.Duration
		for range b.N {
			b.StopTimer()
			s := setup(b)
			b.StartTimer()
			begin := time.Now()
			n, err := reclaim(s)
			took += time.Since(begin)
			if err != nil {
				b.Fatal(err)
			}
			bytes += n
		}
		b.ReportMetric(float64(bytes)/took.Seconds()/1e9, "GB/s")
	}
	b.Run("pullgate-prune(online)", func(b *testing.B) {
		measure(b, func(s *store) (int64, error) {
			rep, err := prune(s.ctx, s.repos, PruneOptions{Confirm: true, Settle: time.Millisecond}, "")
			return rep.Bytes, err
		})
	})
	b.Run("distribution-gc(read-only)", func(b *testing.B) {
		// garbage-collect logs every path it deletes.
		logrus.SetOutput(io.Discard)
		defer logrus.SetOutput(os.Stderr)
		measure(b, func(s *store) (int64, error) {
			return images * size, storage.MarkAndSweep(s.ctx, s.driver, s.ns, storage.GCOpts{RemoveUntagged: true, Quiet: true})
		})
	})
}
