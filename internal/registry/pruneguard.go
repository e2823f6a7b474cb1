package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/distribution/v3"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	pruneGuardMiddleware  = "pullgate-prune-guard"
	pruneGuardOptionStore = "driver"
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
	return &pruneGuard{Repository: repo, driver: driver}, nil
}

// pruneGuard keeps a prune from breaking a push: a blob a prune has set aside comes
// back the moment a push names it, when the client asks whether the registry has it
// (and so skips uploading it) or when a manifest naming it is put.
type pruneGuard struct {
	distribution.Repository
	driver storagedriver.StorageDriver
}

func (r *pruneGuard) Blobs(ctx context.Context) distribution.BlobStore {
	return guardedBlobs{BlobStore: r.Repository.Blobs(ctx), driver: r.driver}
}

func (r *pruneGuard) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return guardedManifests{ManifestService: ms, driver: r.driver}, nil
}

type guardedBlobs struct {
	distribution.BlobStore
	driver storagedriver.StorageDriver
}

func (b guardedBlobs) Stat(ctx context.Context, d digest.Digest) (v1.Descriptor, error) {
	desc, err := b.BlobStore.Stat(ctx, d)
	if errors.Is(err, distribution.ErrBlobUnknown) && revive(ctx, b.driver, d) {
		return b.BlobStore.Stat(ctx, d)
	}
	return desc, err
}

type guardedManifests struct {
	distribution.ManifestService
	driver storagedriver.StorageDriver
}

func (m guardedManifests) Put(ctx context.Context, manifest distribution.Manifest, options ...distribution.ManifestServiceOption) (digest.Digest, error) {
	for _, ref := range manifest.References() {
		revive(ctx, m.driver, ref.Digest)
	}
	return m.ManifestService.Put(ctx, manifest, options...)
}

// revive puts blob d back if a prune has set it aside, and reports whether it did.
func revive(ctx context.Context, driver storagedriver.StorageDriver, d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	return driver.Move(ctx, blobDataPath(d)+pruneSuffix, blobDataPath(d)) == nil
}
