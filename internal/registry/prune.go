package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"pullgate.dev/pullgate/internal/registryauth"
)

// Garbage collection that is safe while the registry serves and takes pushes
// (distribution's garbage-collect needs it read-only; OpenShift's prune is an admin
// run against the API):
//
//  1. Mark. Every manifest a tag points at, that an ImageStream's tag history names,
//     that refers to a marked one (Referrers), or that was stored less than
//     KeepYoungerThan ago (a push in flight may not have tagged it yet) is live, and
//     so is everything it names: config, layers, the manifests of an index.
//  2. Sweep manifests: a repository whose ImageStream is gone is cleared; any other
//     manifest that is not live is deleted, as a DELETE by digest would.
//  3. Sweep blobs, without ever breaking a push in flight: a blob that is not live and
//     older than KeepYoungerThan is first renamed aside, so a push that references it
//     from now on is told it is missing and uploads it again; after Settle, every
//     manifest stored since the prune began is read, and a blob one of them names is
//     put back; the rest are deleted.
//  4. Uploads abandoned for longer than UploadsOlderThan are deleted.

// PruneOptions say what a prune may reclaim.
type PruneOptions struct {
	// Confirm deletes; without it the prune only reports what it would delete.
	Confirm bool
	// KeepYoungerThan keeps everything stored more recently (0: nothing is kept for
	// its age; pushes in flight are still safe, see above).
	KeepYoungerThan time.Duration
	// UploadsOlderThan is the age after which an unfinished upload is abandoned
	// (default 24 hours).
	UploadsOlderThan time.Duration
	// Settle is how long blobs wait renamed aside before they are deleted (default
	// 5 seconds): longer than a manifest PUT takes between checking its blobs and
	// storing itself.
	Settle time.Duration
}

// PruneReport says what a prune reclaimed (or, in a dry run, would reclaim).
type PruneReport struct {
	DryRun       bool
	Repositories int // cleared: their ImageStream is gone
	Manifests    int
	Blobs        int
	Uploads      int
	Bytes        int64
	Took         time.Duration
}

func (r PruneReport) String() string {
	verb := "reclaimed"
	if r.DryRun {
		verb = "would reclaim (dry run; --confirm deletes)"
	}
	return fmt.Sprintf("%s %s: %d blobs, %d manifests, %d abandoned uploads, %d repositories of deleted imagestreams, in %s",
		verb, units.BytesSize(float64(r.Bytes)), r.Blobs, r.Manifests, r.Uploads, r.Repositories, r.Took.Round(time.Millisecond))
}

const (
	v2Root         = "/docker/registry/v2"
	pruneSuffix    = ".pruning"
	defaultUploads = 24 * time.Hour
	defaultSettle  = 5 * time.Second
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
			Help: "Objects reclaimed by prunes, by kind: blob, manifest, upload, repository."}, []string{"kind"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "pullgate", Subsystem: "registry", Name: "prune_duration_seconds",
			Help: "How long prunes took.", Buckets: prometheus.ExponentialBuckets(0.1, 2, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.bytes, m.objects, m.duration)
	}
	return m
}

// PruneStorage prunes a registry's storage from outside the registry (pullgate adm
// prune), safely while registries serve it.
func PruneStorage(ctx context.Context, store configuration.Storage, streams Streams, opts PruneOptions, log *slog.Logger) (PruneReport, error) {
	driver, err := factory.Create(ctx, store.Type(), store.Parameters())
	if err != nil {
		return PruneReport{}, fmt.Errorf("registry storage %s: %w", store.Type(), err)
	}
	ns, err := storage.NewRegistry(ctx, driver)
	if err != nil {
		return PruneReport{}, err
	}
	return prune(ctx, newRepositories(streams, driver, ns, log), opts, filesystemRoot(store))
}

// filesystemRoot is the directory of filesystem storage, "" for any other.
func filesystemRoot(store configuration.Storage) string {
	if store.Type() != "filesystem" {
		return ""
	}
	root, _ := store.Parameters()["rootdirectory"].(string)
	return root
}

// Prune reclaims what nothing reaches. Run one at a time per storage.
func (r *Registry) Prune(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	if r.repos == nil {
		return PruneReport{}, errors.New("prune: this registry keeps no ImageStreams to decide what is live")
	}
	rep, err := prune(ctx, r.repos, opts, r.fsRoot)
	if err == nil && !rep.DryRun && r.prunes != nil {
		r.prunes.bytes.Add(float64(rep.Bytes))
		r.prunes.objects.WithLabelValues("blob").Add(float64(rep.Blobs))
		r.prunes.objects.WithLabelValues("manifest").Add(float64(rep.Manifests))
		r.prunes.objects.WithLabelValues("upload").Add(float64(rep.Uploads))
		r.prunes.objects.WithLabelValues("repository").Add(float64(rep.Repositories))
		r.prunes.duration.Observe(rep.Took.Seconds())
	}
	return rep, err
}

type pruner struct {
	repos  *repositories
	driver storagedriver.StorageDriver
	fsRoot string // filesystem storage's directory, to remove emptied blob directories
	opts   PruneOptions
	begin  time.Time
	cutoff time.Time
	live   map[digest.Digest]bool // blobs, manifests among them
	rep    PruneReport
}

func prune(ctx context.Context, repos *repositories, opts PruneOptions, fsRoot string) (PruneReport, error) {
	if opts.UploadsOlderThan <= 0 {
		opts.UploadsOlderThan = defaultUploads
	}
	if opts.Settle <= 0 {
		opts.Settle = defaultSettle
	}
	now := time.Now()
	p := &pruner{repos: repos, driver: repos.driver, fsRoot: fsRoot, opts: opts, begin: now, cutoff: now.Add(-opts.KeepYoungerThan),
		live: map[digest.Digest]bool{}, rep: PruneReport{DryRun: !opts.Confirm}}
	names, err := p.repositories(ctx)
	if err != nil {
		return p.rep, err
	}
	for _, repo := range names {
		if err := p.repository(ctx, repo); err != nil {
			return p.rep, fmt.Errorf("repository %s: %w", repo, err)
		}
	}
	if err := p.blobs(ctx, names); err != nil {
		return p.rep, err
	}
	p.rep.Took = time.Since(now)
	return p.rep, nil
}

// repositories lists every repository in storage: a directory holding _manifests,
// _layers or _uploads.
func (p *pruner) repositories(ctx context.Context) ([]string, error) {
	var out []string
	root := path.Join(v2Root, "repositories")
	err := p.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			return nil
		}
		switch path.Base(fi.Path()) {
		case "_manifests", "_layers", "_uploads":
			repo := strings.TrimPrefix(path.Dir(fi.Path()), root+"/")
			if len(out) == 0 || out[len(out)-1] != repo {
				out = append(out, repo)
			}
			return storagedriver.ErrSkipDir
		}
		return nil
	})
	if isPathNotFound(err) {
		return nil, nil
	}
	return out, err
}

// repository marks what is live in repo and sweeps its manifests and uploads.
func (p *pruner) repository(ctx context.Context, repo string) error {
	servable, err := p.repos.Servable(ctx, repo)
	if err != nil {
		return err
	}
	if !servable {
		if _, hasOwner := p.owned(ctx, repo); hasOwner || p.olderThanCutoff(ctx, repositoryDir(repo)) {
			p.rep.Repositories++
			if p.opts.Confirm {
				if err := p.repos.clear(ctx, repo); err != nil {
					return err
				}
			}
		}
		return p.uploads(ctx, repo)
	}
	dir := path.Join(repositoryDir(repo), "_manifests")
	revisions := map[digest.Digest]time.Time{}
	_ = p.walkLinks(ctx, path.Join(dir, "revisions"), func(d digest.Digest, mod time.Time) { revisions[d] = mod })
	roots := map[digest.Digest]bool{}
	_ = p.driver.Walk(ctx, path.Join(dir, "tags"), func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && strings.HasSuffix(fi.Path(), "/current/link") {
			if d, err := p.readLink(ctx, fi.Path()); err == nil {
				roots[d] = true
			}
		}
		return nil
	})
	if namespace, name, ok := registryauth.SplitRepository(repo); ok {
		history, err := p.repos.streams.History(ctx, namespace, name)
		if err != nil {
			return err
		}
		for _, h := range history {
			if d, err := digest.Parse(h); err == nil {
				roots[d] = true
			}
		}
	}
	for d, mod := range revisions {
		if mod.After(p.cutoff) {
			roots[d] = true
		}
	}
	live := map[digest.Digest]bool{}
	for d := range roots {
		if _, stored := revisions[d]; stored {
			p.markManifest(ctx, d, live, revisions)
		}
	}
	// Referrers of a live manifest are live (a signature lives as long as its image).
	for grew := true; grew; {
		grew = false
		for d := range revisions {
			if live[d] {
				continue
			}
			if subject, err := p.driver.GetContent(ctx, path.Join(referrersRoot, repo, "referrers", d.Algorithm().String(), d.Encoded())); err == nil {
				if s, err := digest.Parse(string(subject)); err == nil && live[s] {
					p.markManifest(ctx, d, live, revisions)
					grew = true
				}
			}
		}
	}
	for d := range revisions {
		if live[d] {
			continue
		}
		if p.opts.Confirm {
			// A push of this very manifest since the mark rewrote its revision link.
			if p.touchedSince(ctx, path.Join(dir, "revisions", d.Algorithm().String(), d.Encoded(), "link"), p.cutoff) {
				continue
			}
			if err := p.deleteManifest(ctx, repo, d); err != nil {
				return err
			}
		}
		p.rep.Manifests++
	}
	return p.uploads(ctx, repo)
}

// markManifest marks manifest d live, with what it names.
func (p *pruner) markManifest(ctx context.Context, d digest.Digest, live map[digest.Digest]bool, revisions map[digest.Digest]time.Time) {
	if live[d] {
		return
	}
	live[d] = true
	p.live[d] = true
	for _, ref := range p.references(ctx, d) {
		if _, isManifest := revisions[ref]; isManifest {
			p.markManifest(ctx, ref, live, revisions)
		} else {
			p.live[ref] = true
		}
	}
}

// references are the digests a manifest names: config, layers, and an index's manifests.
func (p *pruner) references(ctx context.Context, d digest.Digest) []digest.Digest {
	data, err := p.driver.GetContent(ctx, blobDataPath(d))
	if err != nil {
		return nil
	}
	var m struct {
		Config    *struct{ Digest digest.Digest }  `json:"config"`
		Layers    []struct{ Digest digest.Digest } `json:"layers"`
		Manifests []struct{ Digest digest.Digest } `json:"manifests"`
	}
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	var out []digest.Digest
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	for _, c := range m.Manifests {
		out = append(out, c.Digest)
	}
	return out
}

// deleteManifest removes manifest d from repo as a DELETE by digest would: its
// revision, its place in tag histories, and its referrers index entries.
func (p *pruner) deleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	dir := path.Join(repositoryDir(repo), "_manifests")
	var paths []string
	paths = append(paths, path.Join(dir, "revisions", d.Algorithm().String(), d.Encoded()))
	_ = p.driver.Walk(ctx, path.Join(dir, "tags"), func(fi storagedriver.FileInfo) error {
		if fi.IsDir() && strings.HasSuffix(fi.Path(), "/index/"+d.Algorithm().String()+"/"+d.Encoded()) {
			paths = append(paths, fi.Path())
			return storagedriver.ErrSkipDir
		}
		return nil
	})
	if subject, err := p.driver.GetContent(ctx, path.Join(referrersRoot, repo, "referrers", d.Algorithm().String(), d.Encoded())); err == nil {
		if s, err := digest.Parse(string(subject)); err == nil {
			paths = append(paths, path.Join(referrersRoot, repo, "subjects", s.Algorithm().String(), s.Encoded(), d.Algorithm().String()+"-"+d.Encoded()))
		}
		paths = append(paths, path.Join(referrersRoot, repo, "referrers", d.Algorithm().String(), d.Encoded()))
	}
	for _, p2 := range paths {
		if err := p.driver.Delete(ctx, p2); err != nil && !isPathNotFound(err) {
			return err
		}
	}
	return nil
}

// uploads deletes the uploads of repo abandoned for longer than UploadsOlderThan.
func (p *pruner) uploads(ctx context.Context, repo string) error {
	dir := path.Join(repositoryDir(repo), "_uploads")
	entries, err := p.driver.List(ctx, dir)
	if isPathNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, upload := range entries {
		started := p.begin
		if data, err := p.driver.GetContent(ctx, path.Join(upload, "startedat")); err == nil {
			if t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(data))); err == nil {
				started = t
			}
		} else if fi, err := p.driver.Stat(ctx, upload); err == nil {
			started = fi.ModTime()
		}
		if p.begin.Sub(started) < p.opts.UploadsOlderThan {
			continue
		}
		p.rep.Uploads++
		if fi, err := p.driver.Stat(ctx, path.Join(upload, "data")); err == nil {
			p.rep.Bytes += fi.Size()
		}
		if p.opts.Confirm {
			if err := p.driver.Delete(ctx, upload); err != nil && !isPathNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// blobs sweeps every blob that is not live and older than the cutoff, renaming it
// aside first and putting back what a manifest stored since the prune began names.
func (p *pruner) blobs(ctx context.Context, repos []string) error {
	type candidate struct {
		d    digest.Digest
		size int64
	}
	var candidates []candidate
	root := path.Join(v2Root, "blobs")
	err := p.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() {
			return nil
		}
		base := path.Base(fi.Path())
		d := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(path.Dir(path.Dir(path.Dir(fi.Path()))))), path.Base(path.Dir(fi.Path())))
		if d.Validate() != nil {
			return nil
		}
		switch {
		case base == "data"+pruneSuffix:
			// Left by a prune that stopped half way: back in place if live, else gone.
			if p.live[d] {
				return p.driver.Move(ctx, fi.Path(), blobDataPath(d))
			}
			candidates = append(candidates, candidate{d, -1})
		case base == "data" && !p.live[d] && fi.ModTime().Before(p.cutoff):
			candidates = append(candidates, candidate{d, fi.Size()})
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return err
	}
	for _, c := range candidates {
		p.rep.Blobs++
		p.rep.Bytes += max(c.size, 0)
	}
	if !p.opts.Confirm || len(candidates) == 0 {
		return nil
	}
	aside := candidates[:0]
	for _, c := range candidates {
		if c.size < 0 {
			aside = append(aside, c)
			continue
		}
		if err := p.driver.Move(ctx, blobDataPath(c.d), blobDataPath(c.d)+pruneSuffix); err != nil {
			if isPathNotFound(err) {
				continue
			}
			return err
		}
		aside = append(aside, c)
	}
	select {
	case <-time.After(p.opts.Settle):
	case <-ctx.Done():
	}
	// Manifests stored since the prune began may name a blob now aside: they win.
	wanted := map[digest.Digest]bool{}
	for _, repo := range repos {
		_ = p.walkLinks(ctx, path.Join(repositoryDir(repo), "_manifests", "revisions"), func(d digest.Digest, mod time.Time) {
			if !mod.Before(p.begin) {
				for _, ref := range p.references(ctx, d) {
					wanted[ref] = true
				}
			}
		})
	}
	deleted := map[digest.Digest]bool{}
	for _, c := range aside {
		if wanted[c.d] {
			// Back in place, unless a push has put it back already.
			if err := p.driver.Move(ctx, blobDataPath(c.d)+pruneSuffix, blobDataPath(c.d)); err != nil && !isPathNotFound(err) {
				return err
			}
			p.rep.Blobs--
			p.rep.Bytes -= max(c.size, 0)
			continue
		}
		// Only the file set aside: an upload of the same blob since then wrote data
		// beside it, which stays.
		err := p.driver.Delete(ctx, blobDataPath(c.d)+pruneSuffix)
		if isPathNotFound(err) {
			// A push put it back (pruneGuard): it stays.
			p.rep.Blobs--
			p.rep.Bytes -= max(c.size, 0)
			continue
		}
		if err != nil {
			return err
		}
		p.removeEmptyDir(path.Dir(blobDataPath(c.d)))
		deleted[c.d] = true
	}
	// The layer links of deleted blobs go too, unless a push has linked the blob
	// again since the prune began.
	for _, repo := range repos {
		dir := path.Join(repositoryDir(repo), "_layers")
		_ = p.walkLinks(ctx, dir, func(d digest.Digest, mod time.Time) {
			if !deleted[d] || !mod.Before(p.begin) {
				return
			}
			if _, err := p.driver.Stat(ctx, blobDataPath(d)); !isPathNotFound(err) {
				return
			}
			link := path.Join(dir, d.Algorithm().String(), d.Encoded())
			if !p.touchedSince(ctx, path.Join(link, "link"), p.begin) {
				_ = p.driver.Delete(ctx, link)
			}
		})
	}
	return nil
}

// touchedSince reports whether the file at name changed after t (or cannot be read,
// which keeps what it guards).
func (p *pruner) touchedSince(ctx context.Context, name string, t time.Time) bool {
	fi, err := p.driver.Stat(ctx, name)
	return err != nil || fi.ModTime().After(t)
}

// removeEmptyDir removes a blob's directory on filesystem storage if nothing is in it
// (rmdir fails on a directory an upload has just written into).
func (p *pruner) removeEmptyDir(dir string) {
	if p.fsRoot != "" {
		_ = syscall.Rmdir(filepath.Join(p.fsRoot, filepath.FromSlash(dir)))
	}
}

// walkLinks calls fn for every <algorithm>/<hex>/link under dir.
func (p *pruner) walkLinks(ctx context.Context, dir string, fn func(digest.Digest, time.Time)) error {
	return p.driver.Walk(ctx, dir, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "link" {
			return nil
		}
		hex := path.Base(path.Dir(fi.Path()))
		alg := path.Base(path.Dir(path.Dir(fi.Path())))
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
		if d.Validate() == nil {
			fn(d, fi.ModTime())
		}
		return nil
	})
}

func (p *pruner) readLink(ctx context.Context, link string) (digest.Digest, error) {
	data, err := p.driver.GetContent(ctx, link)
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(data)))
}

// owned reports the owner of repo's storage, if it has one.
func (p *pruner) owned(ctx context.Context, repo string) (string, bool) {
	owner, err := p.repos.owner(ctx, repo)
	return owner, err == nil && owner != ""
}

// olderThanCutoff reports whether nothing under dir changed since the cutoff: a
// repository with no owner is a push that never made its ImageStream, or storage from
// before owners; it is left alone while it may still be in use.
func (p *pruner) olderThanCutoff(ctx context.Context, dir string) bool {
	young := false
	_ = p.driver.Walk(ctx, dir, func(fi storagedriver.FileInfo) error {
		if fi.ModTime().After(p.cutoff) {
			young = true
			return errors.New("young")
		}
		return nil
	})
	return !young
}

func blobDataPath(d digest.Digest) string {
	return path.Join(v2Root, "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}
