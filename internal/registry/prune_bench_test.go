package registry

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/manifest/ocischema"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// Reclaimed bytes per second on filesystem storage: 64 untagged images of 1 MiB and
// one tagged image that stays. pullgate's online prune (which sets everything aside
// and reads the pins twice, so that no push in flight is broken) beside the anchor,
// distribution's garbage-collect with --delete-untagged, which needs the registry
// read-only, in the same run.
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
			rep, err := s.prune(PruneOptions{Confirm: true})
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

// What the fence costs a push on filesystem storage: a manifest stored and tagged with
// its pin (one small file written, the prune's marker looked at, the pin deleted),
// beside the anchor, the same manifest stored and tagged with no pin, in the same run.
func BenchmarkPushFence(b *testing.B) {
	s := newStoreOn(b, filesystem.New(filesystem.DriverParameters{RootDirectory: b.TempDir(), MaxThreads: 100}))
	app := s.repo("bench/app")
	image := s.push(app, "base", strings.Repeat("l", 1<<10))
	ms, _ := app.Manifests(s.ctx)
	m, err := ms.Get(s.ctx, image)
	if err != nil {
		b.Fatal(err)
	}
	manifest := m.(*ocischema.DeserializedManifest).Manifest
	n := 0
	b.Run("pinned", func(b *testing.B) {
		for b.Loop() {
			n++
			if _, err := s.putManifest(app, fmt.Sprint("t", n), nil, manifest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unpinned(anchor)", func(b *testing.B) {
		for b.Loop() {
			n++
			d, err := ms.Put(s.ctx, m)
			if err == nil {
				err = app.Tags(s.ctx).Tag(s.ctx, fmt.Sprint("t", n), v1.Descriptor{Digest: d, MediaType: v1.MediaTypeImageManifest})
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
