package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// Garbage collection that is exact while the registry serves and takes pushes, on
// any number of replicas (distribution's garbage-collect needs the registry
// read-only; Harbor's non-blocking GC skips everything younger than two hours):
//
//  1. Lock. One prune at a time per storage, on a Lease (PruneLock); a prune that
//     loses it stops before its next step.
//  2. Fence. The prune's marker goes into storage, then the pins of writes in flight
//     are read (see fence): what they name is live.
//  3. Mark. Every manifest a tag points at, that an ImageStream's tag history names,
//     that refers to a live one (Referrers), or whose revision is younger than
//     KeepYoungerThan is live, with everything it names: config, layers, the
//     manifests of an index.
//  4. Set aside. Manifest revisions that are not live, blobs that are not live and
//     older than KeepYoungerThan (by their data and every repository's link to them),
//     and repositories' links to those blobs are renamed aside (*.pruning): invisible
//     to reads, and put back by anyone who reaches them legitimately (pruneGuard).
//  5. Fence again. The pins are read again; what they name now, and what that names,
//     is put back.
//  6. Sweep. What is still aside is deleted. Repositories whose ImageStream is gone
//     are cleared (a push making such a stream waits for the Lease: see
//     repositories.Ensure); uploads nobody can resume any more are deleted.
//
// No step waits on a clock: KeepYoungerThan only says what is garbage, and 0s is as
// safe as 1h for every acknowledged push (see fence for why).

// PruneOptions say what a prune may reclaim.
type PruneOptions struct {
	// Confirm deletes; without it the prune only reports what it would delete.
	Confirm bool
	// KeepYoungerThan keeps everything stored more recently (0: nothing is kept for
	// its age; an acknowledged push is kept whatever it says).
	KeepYoungerThan time.Duration
	// UploadsOlderThan is how long an upload may go unwritten before it is reclaimed
	// (default UploadSessionIdle, after which the registry refuses to resume it).
	UploadsOlderThan time.Duration
	// Wait, when another prune holds the lock, waits for it rather than returning
	// the lock's error at once.
	Wait bool
}

// PruneReport says what a prune reclaimed (or, in a dry run, would reclaim).
type PruneReport struct {
	DryRun       bool
	Repositories int // cleared: their ImageStream is gone
	Manifests    int
	Blobs        int
	Uploads      int
	Bytes        int64
	// Kept counts what was set aside and put back because a write named it meanwhile.
	Kept int
	Took time.Duration
}

func (r PruneReport) String() string {
	verb := "reclaimed"
	if r.DryRun {
		verb = "would reclaim (dry run; --confirm deletes)"
	}
	return fmt.Sprintf("%s %s: %d blobs, %d manifests, %d abandoned uploads, %d repositories of deleted imagestreams, in %s",
		verb, units.BytesSize(float64(r.Bytes)), r.Blobs, r.Manifests, r.Uploads, r.Repositories, r.Took.Round(time.Millisecond))
}

// PruneLock lets one prune at a time run on a storage (a Lease in the cluster's API,
// leader.Lock), and tells a push that makes a repository's ImageStream whether a
// prune may be clearing that repository.
type PruneLock interface {
	// Hold runs fn while holding the lock; fn's context ends if the lock is lost.
	// Without wait, a lock held by another is an error at once.
	Hold(ctx context.Context, wait bool, fn func(context.Context) error) error
	// Held reports whether a prune holds the lock now.
	Held(ctx context.Context) (bool, error)
}

const (
	v2Root      = "/docker/registry/v2"
	pruneSuffix = ".pruning"
)

// pruneMetrics count what prunes reclaim.
type pruneMetrics struct {
	bytes    prometheus.Counter
	objects  *prometheus.CounterVec
	duration prometheus.Histogram
}

func newPruneMetrics(reg prometheus.Registerer) *pruneMetrics {
	m := &pruneMetrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pullgate", Subsystem: "registry", Name: "prune_reclaimed_bytes_total",
			Help: "Bytes of storage reclaimed by prunes."}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "pullgate", Subsystem: "registry", Name: "prune_reclaimed_objects_total",
			Help: "Objects reclaimed by prunes, by kind: blob, manifest, upload, repository; kept: set aside and put back because a write named it."}, []string{"kind"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "pullgate", Subsystem: "registry", Name: "prune_duration_seconds",
			Help: "How long prunes took.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.bytes, m.objects, m.duration)
	}
	return m
}

func (m *pruneMetrics) observe(rep PruneReport) {
	m.bytes.Add(float64(rep.Bytes))
	for kind, n := range map[string]int{"blob": rep.Blobs, "manifest": rep.Manifests, "upload": rep.Uploads, "repository": rep.Repositories, "kept": rep.Kept} {
		m.objects.WithLabelValues(kind).Add(float64(n))
	}
	m.duration.Observe(rep.Took.Seconds())
}

// PruneStorage prunes a registry's storage from outside the registry (pullgate adm
// prune), exactly while registries serve it.
func PruneStorage(ctx context.Context, store configuration.Storage, streams Streams, lock PruneLock, opts PruneOptions, log *slog.Logger) (PruneReport, error) {
	driver, err := factory.Create(ctx, store.Type(), store.Parameters())
	if err != nil {
		return PruneReport{}, fmt.Errorf("registry storage %s: %w", store.Type(), err)
	}
	ns, err := storage.NewRegistry(ctx, driver)
	if err != nil {
		return PruneReport{}, err
	}
	return prune(ctx, newRepositories(streams, driver, ns, log), lock, opts, filesystemRoot(store))
}

// Prune reclaims what nothing reaches.
func (r *Registry) Prune(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	if r.repos == nil {
		return PruneReport{}, errors.New("prune: this registry keeps no ImageStreams to decide what is live")
	}
	rep, err := prune(ctx, r.repos, r.repos.pruneLock, opts, r.fsRoot)
	if err == nil && !rep.DryRun && r.prunes != nil {
		r.prunes.observe(rep)
	}
	return rep, err
}

func prune(ctx context.Context, repos *repositories, lock PruneLock, opts PruneOptions, fsRoot string) (PruneReport, error) {
	if opts.UploadsOlderThan <= 0 {
		opts.UploadsOlderThan = UploadSessionIdle
	}
	p := newPruner(repos, opts, fsRoot)
	if !opts.Confirm || lock == nil {
		return p.run(ctx)
	}
	var rep PruneReport
	err := lock.Hold(ctx, opts.Wait, func(ctx context.Context) error {
		var err error
		rep, err = p.run(ctx)
		return err
	})
	return rep, err
}

// pruner is one prune's state.
type pruner struct {
	repos  *repositories
	driver storagedriver.StorageDriver
	fence  fence
	fsRoot string // filesystem storage's directory, to remove emptied directories
	opts   PruneOptions
	begin  time.Time
	cutoff time.Time

	streams map[string]streamState // "namespace/name" → the ImageStream
	repo    map[string]*repoState  // every repository in storage
	blobs   map[digest.Digest]*link
	refsMu  sync.Mutex
	refs    map[digest.Digest][]digest.Digest // what each manifest read names
	rep     PruneReport
}

func newPruner(repos *repositories, opts PruneOptions, fsRoot string) *pruner {
	return &pruner{repos: repos, driver: repos.driver, fence: fence{repos.driver}, fsRoot: fsRoot, opts: opts,
		repo: map[string]*repoState{}, blobs: map[digest.Digest]*link{}, refs: map[digest.Digest][]digest.Digest{},
		rep: PruneReport{DryRun: !opts.Confirm}}
}

func (p *pruner) run(ctx context.Context) (PruneReport, error) {
	p.begin = time.Now()
	p.cutoff = p.begin.Add(-p.opts.KeepYoungerThan)
	if p.opts.Confirm {
		if err := p.fence.begin(ctx, fmt.Sprint("prune since ", p.begin.UTC().Format(time.RFC3339Nano))); err != nil {
			return p.rep, fmt.Errorf("writing the prune's marker: %w", err)
		}
	}
	var seen []pinned
	err := p.markAndSweep(ctx, &seen)
	// A prune that lost its lock leaves the fence to the prune that holds it now.
	if p.opts.Confirm && ctx.Err() == nil {
		if ferr := p.fence.end(ctx, seen, time.Now()); ferr != nil && err == nil {
			err = fmt.Errorf("removing the prune's marker: %w", ferr)
		}
	}
	p.rep.Took = time.Since(p.begin)
	return p.rep, err
}

func (p *pruner) markAndSweep(ctx context.Context, seen *[]pinned) error {
	before, err := p.fence.pins(ctx)
	if err != nil {
		return fmt.Errorf("reading pins: %w", err)
	}
	*seen = before
	if err := p.load(ctx); err != nil {
		return err
	}
	if err := p.mark(ctx, before); err != nil {
		return err
	}
	p.choose()
	if !p.opts.Confirm {
		return nil
	}
	if err := p.setAside(ctx); err != nil {
		return err
	}
	after, err := p.fence.pins(ctx)
	if err != nil {
		// What is aside stays aside, put back by whoever reaches it, and is finished
		// by the next prune.
		return fmt.Errorf("reading pins: %w", err)
	}
	*seen = append(*seen, after...)
	if err := p.markPinned(ctx, after); err != nil {
		return err
	}
	if err := p.putBack(ctx); err != nil {
		return err
	}
	if err := p.sweep(ctx, after); err != nil {
		return err
	}
	return ctx.Err()
}
