package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"

	"github.com/distribution/distribution/v3"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	pruneGuardMiddleware  = "pullgate-prune-guard"
	pruneGuardOptionStore = "driver"
	pruneGuardOptionLog   = "log"
)

func init() {
	if err := repositorymiddleware.Register(pruneGuardMiddleware, newPruneGuard); err != nil {
		panic(err)
	}
}

func newPruneGuard(_ context.Context, repo distribution.Repository, options map[string]any) (distribution.Repository, error) {
	driver, ok := options[pruneGuardOptionStore].(storagedriver.StorageDriver)
	if !ok {
		return nil, fmt.Errorf("%s middleware: no storage driver", pruneGuardMiddleware)
	}
	log, _ := options[pruneGuardOptionLog].(*slog.Logger)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &pruneGuard{Repository: repo, driver: driver, log: log}, nil
}

// pruneGuard is the fence's side in distribution (see fence): a blob upload's commit
// and a cross-repository mount are pinned while they run, and whatever a prune has
// set aside comes back the moment anyone reaches it legitimately — a HEAD or GET of a
// blob linked in the repository, a manifest read, a manifest PUT naming it — so a
// prune that stops half way hides nothing for long.
type pruneGuard struct {
	distribution.Repository
	driver storagedriver.StorageDriver
	log    *slog.Logger
}

func (r *pruneGuard) name() string { return r.Named().Name() }

func (r *pruneGuard) Blobs(ctx context.Context) distribution.BlobStore {
	return guardedBlobs{BlobStore: r.Repository.Blobs(ctx), repo: r}
}

func (r *pruneGuard) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return guardedManifests{ManifestService: ms, repo: r}, nil
}

type guardedBlobs struct {
	distribution.BlobStore
	repo *pruneGuard
}

func (b guardedBlobs) Stat(ctx context.Context, d digest.Digest) (v1.Descriptor, error) {
	desc, err := b.BlobStore.Stat(ctx, d)
	if errors.Is(err, distribution.ErrBlobUnknown) && revive(ctx, b.repo.driver, b.repo.name(), d) {
		return b.BlobStore.Stat(ctx, d)
	}
	return desc, err
}

// Create pins a cross-repository mount, which links a blob that exists into this
// repository. A mount that finds nothing to link begins an ordinary upload instead,
// outside the pin (its writer outlives this request).
func (b guardedBlobs) Create(ctx context.Context, options ...distribution.BlobCreateOption) (distribution.BlobWriter, error) {
	var opts distribution.CreateOptions
	for _, o := range options {
		_ = o.Apply(&opts)
	}
	if opts.Mount.ShouldMount {
		if mounted, err := b.mount(ctx, opts.Mount.From.Digest(), options); mounted || err != nil {
			return nil, err
		}
		options = nil
	}
	w, err := b.BlobStore.Create(ctx, options...)
	if err != nil {
		return nil, err
	}
	return pinnedCommit{BlobWriter: w, repo: b.repo}, nil
}

// mount links blob d from another repository, pinned; the error is distribution's
// ErrBlobMounted when it did.
func (b guardedBlobs) mount(ctx context.Context, d digest.Digest, options []distribution.BlobCreateOption) (bool, error) {
	pinCtx, p, err := fence{b.repo.driver}.pin(ctx, blobPin(b.repo.name(), d))
	if err != nil {
		return false, err
	}
	defer b.repo.release(ctx, p)
	w, err := b.BlobStore.Create(pinCtx, options...)
	if err != nil {
		var mounted distribution.ErrBlobMounted
		return errors.As(err, &mounted), err
	}
	// Nothing to mount: the upload this began is dropped for one made outside the pin.
	_ = w.Cancel(ctx)
	return false, nil
}

func (b guardedBlobs) Resume(ctx context.Context, id string) (distribution.BlobWriter, error) {
	w, err := b.BlobStore.Resume(ctx, id)
	if err != nil {
		return nil, err
	}
	return pinnedCommit{BlobWriter: w, repo: b.repo}, nil
}

// pinnedCommit pins an upload's commit, which keeps a blob already stored (maybe one a
// prune has decided is garbage) or moves the upload into place, then links it.
type pinnedCommit struct {
	distribution.BlobWriter
	repo *pruneGuard
}

func (w pinnedCommit) Commit(ctx context.Context, provisional v1.Descriptor) (v1.Descriptor, error) {
	pinCtx, p, err := fence{w.repo.driver}.pin(ctx, blobPin(w.repo.name(), provisional.Digest))
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer w.repo.release(ctx, p)
	return w.BlobWriter.Commit(pinCtx, provisional)
}

func (r *pruneGuard) release(ctx context.Context, p *pin) {
	if err := p.release(ctx); err != nil {
		r.log.Warn("a write's pin could not be released; what it names is kept from prunes for an hour", "repository", r.name(), "err", err)
	}
}

type guardedManifests struct {
	distribution.ManifestService
	repo *pruneGuard
}

func (m guardedManifests) Exists(ctx context.Context, d digest.Digest) (bool, error) {
	ok, err := m.ManifestService.Exists(ctx, d)
	if err == nil && !ok && revive(ctx, m.repo.driver, m.repo.name(), d) {
		return m.ManifestService.Exists(ctx, d)
	}
	return ok, err
}

func (m guardedManifests) Get(ctx context.Context, d digest.Digest, options ...distribution.ManifestServiceOption) (distribution.Manifest, error) {
	manifest, err := m.ManifestService.Get(ctx, d, options...)
	var unknown distribution.ErrManifestUnknownRevision
	if errors.As(err, &unknown) && revive(ctx, m.repo.driver, m.repo.name(), d) {
		return m.ManifestService.Get(ctx, d, options...)
	}
	return manifest, err
}

// Put stores the manifest; what it names that a prune has set aside is put back and
// the manifest stored again. The write is pinned by the HTTP handler (pinnedWrites),
// which also covers its tag.
func (m guardedManifests) Put(ctx context.Context, manifest distribution.Manifest, options ...distribution.ManifestServiceOption) (digest.Digest, error) {
	d, err := m.ManifestService.Put(ctx, manifest, options...)
	var verification distribution.ErrManifestVerification
	if !errors.As(err, &verification) {
		return d, err
	}
	revived := false
	for _, e := range verification {
		var unknown distribution.ErrManifestBlobUnknown
		if errors.As(e, &unknown) && revive(ctx, m.repo.driver, m.repo.name(), unknown.Digest) {
			revived = true
		}
	}
	if !revived {
		return d, err
	}
	return m.ManifestService.Put(ctx, manifest, options...)
}

// revive puts back what a prune set aside of d for repo — its data, and repo's layer
// and manifest revision links to it — and reports whether it put back anything.
func revive(ctx context.Context, driver storagedriver.StorageDriver, repo string, d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	revived := false
	for _, p := range []string{blobDataPath(d), layerLinkPath(repo, d), revisionLinkPath(repo, d)} {
		if driver.Move(ctx, p+pruneSuffix, p) == nil {
			revived = true
		}
	}
	return revived
}

func blobDataPath(d digest.Digest) string {
	return path.Join(v2Root, "blobs", d.Algorithm().String(), d.Encoded()[:2], d.Encoded(), "data")
}

// layerLinkPath is repo's link to blob d; revisionLinkPath its link to manifest d.
func layerLinkPath(repo string, d digest.Digest) string {
	return path.Join(repositoryDir(repo), "_layers", d.Algorithm().String(), d.Encoded(), "link")
}

func revisionLinkPath(repo string, d digest.Digest) string {
	return path.Join(repositoryDir(repo), "_manifests", "revisions", d.Algorithm().String(), d.Encoded(), "link")
}
