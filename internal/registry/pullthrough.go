package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// PullThrough finds the images a repository's stream imported from another
// registry with reference policy Local (oc import-image --reference-policy=local),
// which the registry serves as its own: fetched from the source on first use with
// the project's credentials, verified, stored, and served from storage after.
type PullThrough interface {
	// Tag is the digest tag of stream namespace/name points at, when it is such an
	// import.
	Tag(namespace, name, tag string) (digest.Digest, bool)
	// Source opens where stream namespace/name imported digest from, with the
	// project's credentials; ok is false when digest is no such import of the stream.
	Source(ctx context.Context, namespace, name string, dgst digest.Digest) (src Source, ok bool, err error)
}

// Source is one upstream repository, read with one credential. Both reads verify
// what they return against the digest asked for.
type Source interface {
	Manifest(ctx context.Context, dgst digest.Digest) (mediaType string, body []byte, err error)
	Blob(ctx context.Context, dgst digest.Digest) (io.ReadCloser, error)
	// String names the repository, for messages.
	String() string
}

const (
	pullThroughMiddleware = "pullgate-pullthrough"
	pullThroughOption     = "pullthrough"
	// pullThroughTimeout bounds one image's fetch, which outlives a client that
	// gives up: the next pull finds it stored.
	pullThroughTimeout = 10 * time.Minute
)

func init() {
	if err := repositorymiddleware.Register(pullThroughMiddleware, newPullThroughMiddleware); err != nil {
		panic(err)
	}
}

// fetches makes concurrent pulls of one image share one fetch.
var fetches singleflight.Group

func newPullThroughMiddleware(_ context.Context, repo distribution.Repository, options map[string]any) (distribution.Repository, error) {
	pt, ok := options[pullThroughOption].(PullThrough)
	if !ok {
		return nil, fmt.Errorf("%s middleware: no pull-through", pullThroughMiddleware)
	}
	return &pullThroughRepository{Repository: repo, pt: pt}, nil
}

// pullThroughRepository answers a manifest it does not hold, or a tag it does not
// hold, from the stream's imports.
type pullThroughRepository struct {
	distribution.Repository
	pt PullThrough
}

func (r *pullThroughRepository) stream() (string, string, bool) {
	return tokenauth.SplitRepository(r.Named().Name())
}

func (r *pullThroughRepository) Tags(ctx context.Context) distribution.TagService {
	return &pullThroughTags{TagService: r.Repository.Tags(ctx), repo: r}
}

func (r *pullThroughRepository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return &pullThroughManifests{ManifestService: ms, repo: r}, nil
}

type pullThroughTags struct {
	distribution.TagService
	repo *pullThroughRepository
}

// Get is the stored tag, else the digest an import with reference policy Local
// points it at (the tag itself is not stored: the stream says where it points).
func (t *pullThroughTags) Get(ctx context.Context, tag string) (v1.Descriptor, error) {
	desc, err := t.TagService.Get(ctx, tag)
	var unknown distribution.ErrTagUnknown
	if err == nil || !errors.As(err, &unknown) {
		return desc, err
	}
	if ns, name, ok := t.repo.stream(); ok {
		if dgst, ok := t.repo.pt.Tag(ns, name, tag); ok {
			return v1.Descriptor{Digest: dgst}, nil
		}
	}
	return desc, err
}

type pullThroughManifests struct {
	distribution.ManifestService
	repo *pullThroughRepository
}

func (m *pullThroughManifests) Exists(ctx context.Context, dgst digest.Digest) (bool, error) {
	ok, err := m.ManifestService.Exists(ctx, dgst)
	if ok || err != nil {
		return ok, err
	}
	if err := m.fetch(ctx, dgst); err != nil {
		var unknown distribution.ErrManifestUnknownRevision
		if errors.As(err, &unknown) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// Get is the stored manifest, else the import's, fetched and stored first.
func (m *pullThroughManifests) Get(ctx context.Context, dgst digest.Digest, options ...distribution.ManifestServiceOption) (distribution.Manifest, error) {
	manifest, err := m.ManifestService.Get(ctx, dgst, options...)
	var unknown distribution.ErrManifestUnknownRevision
	if err == nil || !errors.As(err, &unknown) {
		return manifest, err
	}
	if err := m.fetch(ctx, dgst); err != nil {
		return nil, err
	}
	return m.ManifestService.Get(ctx, dgst, options...)
}

// fetch stores the import digest of the repository's stream — its blobs, the
// manifests an index names, then the manifest — once for concurrent pulls.
func (m *pullThroughManifests) fetch(ctx context.Context, dgst digest.Digest) error {
	repo := m.repo.Named().Name()
	ns, name, ok := m.repo.stream()
	notHere := distribution.ErrManifestUnknownRevision{Name: repo, Revision: dgst}
	if !ok {
		return notHere
	}
	src, ok, err := m.repo.pt.Source(ctx, ns, name, dgst)
	if err != nil {
		return errcode.ErrorCodeManifestUnknown.WithMessage(fmt.Sprintf("%s@%s is imported from another registry and could not be read there: %v", repo, dgst, err))
	}
	if !ok {
		return notHere
	}
	_, err, _ = fetches.Do(repo+"@"+dgst.String(), func() (any, error) {
		// The client may go; the image is stored for the next pull all the same.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullThroughTimeout)
		defer cancel()
		return nil, m.store(ctx, src, dgst)
	})
	if err != nil {
		return errcode.ErrorCodeManifestUnknown.WithMessage(fmt.Sprintf("%s@%s is imported from %s and could not be fetched from there: %v", repo, dgst, src, err))
	}
	return nil
}

// store copies manifest dgst and everything it names from src into the repository.
func (m *pullThroughManifests) store(ctx context.Context, src Source, dgst digest.Digest) error {
	if ok, err := m.ManifestService.Exists(ctx, dgst); err != nil || ok {
		return err
	}
	mediaType, body, err := src.Manifest(ctx, dgst)
	if err != nil {
		return err
	}
	manifest, desc, err := distribution.UnmarshalManifest(mediaType, body)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", dgst, err)
	}
	if desc.Digest != dgst {
		return fmt.Errorf("manifest %s: the source answered %s", dgst, desc.Digest)
	}
	blobs := m.repo.Blobs(ctx)
	for _, ref := range manifest.References() {
		if isManifest(ref.MediaType) {
			if err := m.store(ctx, src, ref.Digest); err != nil {
				return err
			}
			continue
		}
		if err := copyBlob(ctx, blobs, src, ref); err != nil {
			return err
		}
	}
	stored, err := m.ManifestService.Put(ctx, manifest)
	if err == nil && stored != dgst {
		err = fmt.Errorf("manifest %s was stored as %s", dgst, stored)
	}
	return err
}

// copyBlob stores blob ref from src, unless the repository holds it; distribution
// checks its digest and size as it commits.
func copyBlob(ctx context.Context, blobs distribution.BlobStore, src Source, ref v1.Descriptor) error {
	if _, err := blobs.Stat(ctx, ref.Digest); err == nil {
		return nil
	}
	body, err := src.Blob(ctx, ref.Digest)
	if err != nil {
		return fmt.Errorf("blob %s: %w", ref.Digest, err)
	}
	defer body.Close()
	w, err := blobs.Create(ctx)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, body); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("blob %s: %w", ref.Digest, err)
	}
	if _, err := w.Commit(ctx, v1.Descriptor{Digest: ref.Digest, Size: ref.Size, MediaType: ref.MediaType}); err != nil {
		return fmt.Errorf("blob %s: %w", ref.Digest, err)
	}
	return nil
}

func isManifest(mediaType string) bool {
	switch mediaType {
	case v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}
