package registry

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"pullgate.dev/pullgate/internal/registryauth"
)

// Streams is what the registry needs of the ImageStream API.
type Streams interface {
	// UID is the UID of ImageStream namespace/name, if it exists, from an informer.
	UID(namespace, name string) (string, bool)
	// Get reads the same from the API.
	Get(ctx context.Context, namespace, name string) (uid string, exists bool, err error)
	// Ensure returns the UID of ImageStream namespace/name, making it when missing.
	Ensure(ctx context.Context, namespace, name, repository string) (uid string, created bool, err error)
	// RecordTag points tag at digest in the stream of that UID.
	RecordTag(ctx context.Context, namespace, name, uid, repository, tag, digest, mediaType string) error
}

// repositories ties the storage of each repository to the ImageStream that owns it,
// so that a repository exists for the registry only while its ImageStream does, and
// a namespace deleted and made again never serves its old tenant's images.
//
// The owner is the ImageStream's UID, kept in the storage driver beside the
// repository (/pullgate/owners/<repository>/_owner; "_" cannot start a component of
// a repository name). A repository is served only while an ImageStream of that UID
// exists. A push makes the ImageStream first (before anything is stored), and a push
// that finds storage owned by another UID, or storage it did not make the stream
// for, clears the repository's links before writing its own owner: what remains of
// an earlier tenant is never reachable again, and its blobs are left for garbage
// collection. When an ImageStream is deleted its repository's links are cleared too.
type repositories struct {
	streams Streams
	driver  storagedriver.StorageDriver
	log     *slog.Logger

	mu     sync.Mutex
	owners map[string]string // repository → owner UID, for repositories that have one
	locks  map[string]*repoLock
}

type repoLock struct {
	sync.Mutex
	users int
}

const ownersRoot = "/pullgate/owners"

func newRepositories(streams Streams, driver storagedriver.StorageDriver, log *slog.Logger) *repositories {
	return &repositories{streams: streams, driver: driver, log: log, owners: map[string]string{}, locks: map[string]*repoLock{}}
}

func ownerPath(repo string) string { return path.Join(ownersRoot, repo, "_owner") }

// lock serialises the changes of one repository's owner in this process.
func (r *repositories) lock(repo string) func() {
	r.mu.Lock()
	l := r.locks[repo]
	if l == nil {
		l = &repoLock{}
		r.locks[repo] = l
	}
	l.users++
	r.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		r.mu.Lock()
		if l.users--; l.users == 0 {
			delete(r.locks, repo)
		}
		r.mu.Unlock()
	}
}

// owner is the UID the repository's storage belongs to, "" for none.
func (r *repositories) owner(ctx context.Context, repo string) (string, error) {
	r.mu.Lock()
	uid, ok := r.owners[repo]
	r.mu.Unlock()
	if ok {
		return uid, nil
	}
	data, err := r.driver.GetContent(ctx, ownerPath(repo))
	var notFound storagedriver.PathNotFoundError
	switch {
	case errors.As(err, &notFound):
		// Not remembered: another replica may give it an owner at any moment.
		return "", nil
	case err != nil:
		return "", err
	}
	r.remember(repo, string(data))
	return string(data), nil
}

func (r *repositories) remember(repo, uid string) {
	r.mu.Lock()
	if uid == "" {
		delete(r.owners, repo)
	} else {
		r.owners[repo] = uid
	}
	r.mu.Unlock()
}

func (r *repositories) setOwner(ctx context.Context, repo, uid string) error {
	if err := r.driver.PutContent(ctx, ownerPath(repo), []byte(uid)); err != nil {
		return err
	}
	r.remember(repo, uid)
	return nil
}

// Servable reports whether repo may be read: its ImageStream exists and owns its
// storage. Storage from before owners were recorded is adopted by the stream.
func (r *repositories) Servable(ctx context.Context, repo string) (bool, error) {
	namespace, name, ok := registryauth.SplitRepository(repo)
	if !ok {
		return false, nil
	}
	owner, err := r.owner(ctx, repo)
	if err != nil {
		return false, err
	}
	uid, exists := r.streams.UID(namespace, name)
	if !exists && owner != "" {
		// Maybe a stream made a moment ago (here or by another replica) that the
		// informer has not seen yet: ask the API.
		if uid, exists, err = r.streams.Get(ctx, namespace, name); err != nil {
			return false, err
		}
	}
	if !exists || owner != "" {
		return exists && owner == uid, nil
	}
	defer r.lock(repo)()
	if owner, err = r.owner(ctx, repo); err != nil || owner != "" {
		return owner == uid, err
	}
	return true, r.setOwner(ctx, repo, uid)
}

// UID is the owner of a servable repository, as Servable or Ensure found it.
func (r *repositories) UID(ctx context.Context, repo string) (string, error) {
	return r.owner(ctx, repo)
}

// Ensure makes repo's ImageStream exist and own the repository's storage, before a
// push writes to it; what an earlier owner left is cleared first.
func (r *repositories) Ensure(ctx context.Context, repo, host string) error {
	namespace, name, ok := registryauth.SplitRepository(repo)
	if !ok {
		return errors.New("not a repository of a namespace")
	}
	if uid, exists := r.streams.UID(namespace, name); exists {
		if owner, err := r.owner(ctx, repo); err == nil && owner == uid {
			return nil
		}
	}
	defer r.lock(repo)()
	uid, created, err := r.streams.Ensure(ctx, namespace, name, host+"/"+repo)
	if err != nil {
		return err
	}
	owner, err := r.owner(ctx, repo)
	if err != nil || owner == uid {
		return err
	}
	if owner != "" || created {
		if err := r.clear(ctx, repo); err != nil {
			return err
		}
	}
	return r.setOwner(ctx, repo, uid)
}

// Deleted clears the repository of an ImageStream that was deleted, if its storage
// still belongs to it.
func (r *repositories) Deleted(ctx context.Context, repo, uid string) {
	defer r.lock(repo)()
	owner, err := r.owner(ctx, repo)
	if err != nil || owner != uid {
		return
	}
	if err := r.clear(ctx, repo); err != nil {
		r.log.Warn("clearing the repository of a deleted imagestream", "repository", repo, "err", err)
		return
	}
	r.log.Info("repository cleared: its imagestream was deleted", "repository", repo)
}

// Reconcile clears every repository whose owner no longer exists (an ImageStream
// deleted while no registry was running), asking the API, not an informer, so that
// a stream made a moment ago by another replica is never mistaken for a gone one.
func (r *repositories) Reconcile(ctx context.Context) error {
	var stale []string
	err := r.driver.Walk(ctx, ownersRoot, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "_owner" {
			return nil
		}
		repo := strings.TrimPrefix(path.Dir(fi.Path()), ownersRoot+"/")
		namespace, name, ok := registryauth.SplitRepository(repo)
		if !ok {
			return nil
		}
		owner, err := r.owner(ctx, repo)
		if err != nil || owner == "" {
			return err
		}
		uid, exists, err := r.streams.Get(ctx, namespace, name)
		if err != nil {
			return err
		}
		if !exists || uid != owner {
			stale = append(stale, repo)
		}
		return nil
	})
	var notFound storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &notFound) {
		return err
	}
	for _, repo := range stale {
		owner, _ := r.owner(ctx, repo)
		r.Deleted(ctx, repo, owner)
	}
	return nil
}

// clear deletes what makes repo's content reachable — its tags, manifest and layer
// links, uploads and referrers index — and then its owner, last, so a crash half-way
// leaves an owner that no stream has and the next push or reconcile clears again.
// Blobs stay for garbage collection.
func (r *repositories) clear(ctx context.Context, repo string) error {
	dir := path.Join("/docker/registry/v2/repositories", repo)
	for _, p := range []string{
		path.Join(dir, "_manifests"), path.Join(dir, "_layers"), path.Join(dir, "_uploads"),
		path.Join(referrersRoot, repo, "subjects"), path.Join(referrersRoot, repo, "referrers"),
		ownerPath(repo),
	} {
		var notFound storagedriver.PathNotFoundError
		if err := r.driver.Delete(ctx, p); err != nil && !errors.As(err, &notFound) {
			return err
		}
	}
	r.remember(repo, "")
	return nil
}
