package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Streams is what the registry needs of the ImageStream API.
type Streams interface {
	// UID is the UID of ImageStream namespace/name, if it exists, from an informer.
	UID(namespace, name string) (string, bool)
	// Get reads the same from the API.
	Get(ctx context.Context, namespace, name string) (uid string, exists bool, err error)
	// Ensure returns the UID of ImageStream namespace/name, making it when missing.
	Ensure(ctx context.Context, namespace, name, repository string) (uid string, created bool, err error)
	// RecordTag points tag at ev in the stream of that UID; RemoveTag takes it out;
	// SyncTags makes the stream's tags exactly want.
	RecordTag(ctx context.Context, namespace, name, uid, repository, tag string, ev imageapi.TagEvent) error
	RemoveTag(ctx context.Context, namespace, name, uid, tag string) error
	// RecordReferrer lists a referrer (a manifest with a subject) on the stream.
	RecordReferrer(ctx context.Context, namespace, name, uid string, ref imageapi.Referrer) error
	SyncTags(ctx context.Context, namespace, name, uid, repository string, want map[string]imageapi.TagEvent, readAt time.Time) (bool, error)
	// History lists every digest the stream's tags point or pointed at.
	History(ctx context.Context, namespace, name string) ([]string, error)
	// List reads every ImageStream from the API (a prune's one look at them all).
	List(ctx context.Context) ([]imageapi.ImageStream, error)
}

// repositories ties the storage of each repository to the ImageStream that owns it,
// so that a repository exists for the registry only while its ImageStream does, and
// a namespace deleted and made again never serves its old tenant's images.
//
// The owner is the ImageStream's UID, kept in the storage driver beside the
// repository (/pullgate/owners/<repository>/_owner; "_" cannot start a component of
// a repository name). A repository is served only while an ImageStream of that UID
// exists. A push makes the ImageStream first (before anything is stored); a push
// that finds an earlier tenant's storage clears the repository's links — before it
// makes the stream when there is none yet, so that no replica clears what another
// has begun to push for the new one — and then writes its own owner: what remains of
// an earlier tenant is never reachable again, and its blobs are left for garbage
// collection. When an ImageStream is deleted its repository's links are cleared too.
type repositories struct {
	streams Streams
	driver  storagedriver.StorageDriver
	storage distribution.Namespace // the same storage, as distribution reads it
	log     *slog.Logger

	// pruneLock is the lock prunes of this storage take; nil when nothing prunes it.
	pruneLock PruneLock
	// tagGrace is how long a tag no manifest answers for stays in storage
	// (unservableTagGrace; tests shorten it).
	tagGrace time.Duration

	mu     sync.Mutex
	owners map[string]string // repository → owner UID, for repositories that have one
	locks  map[string]*repoLock
}

type repoLock struct {
	sync.Mutex
	users int
}

const ownersRoot = "/pullgate/owners"

func newRepositories(streams Streams, driver storagedriver.StorageDriver, storage distribution.Namespace, log *slog.Logger) *repositories {
	return &repositories{streams: streams, driver: driver, storage: storage, log: log, owners: map[string]string{}, locks: map[string]*repoLock{},
		tagGrace: unservableTagGrace}
}

func ownerPath(repo string) string { return path.Join(ownersRoot, repo, "_owner") }

// repositoryDir is where distribution keeps repo's links and uploads.
func repositoryDir(repo string) string { return path.Join(v2Root, "repositories", repo) }

// lock serialises, in this process, the changes of one repository's owner, and each
// tag change with its record in the stream (so the stream sees them in storage's order).
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
	uid, err := r.storedOwner(ctx, repo)
	if err != nil || uid == "" {
		// None is not remembered: another replica may give it an owner at any moment.
		return "", err
	}
	r.remember(repo, uid)
	return uid, nil
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
	namespace, name, ok := tokenauth.SplitRepository(repo)
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
	namespace, name, ok := tokenauth.SplitRepository(repo)
	if !ok {
		return errors.New("not a repository of a namespace")
	}
	if uid, exists := r.streams.UID(namespace, name); exists {
		if owner, err := r.owner(ctx, repo); err == nil && owner == uid {
			return nil
		}
	}
	defer r.lock(repo)()
	// Until the stream exists nobody may push to the repository, so what is stored
	// there then is an earlier tenant's: it is cleared before the stream is made, never
	// after, when another replica may already be writing the new tenant's first blobs.
	// What is stored is read before the stream is looked up, so that a stream another
	// replica makes meanwhile, and its pushes, are not mistaken for leftovers.
	leftovers, err := r.hasLeftovers(ctx, repo)
	if err != nil {
		return err
	}
	if leftovers {
		_, exists, err := r.streams.Get(ctx, namespace, name)
		if err != nil {
			return err
		}
		if !exists {
			if err := r.clear(ctx, repo); err != nil {
				return err
			}
		}
	}
	uid, _, err := r.streams.Ensure(ctx, namespace, name, host+"/"+repo)
	if err != nil {
		return err
	}
	owner, err := r.storedOwner(ctx, repo)
	if err != nil || owner == uid {
		if err == nil {
			r.remember(repo, uid)
		}
		return err
	}
	// The repository changes hands over an earlier tenant's storage. A prune holding
	// its lock may have found no stream here a moment ago and be clearing it: the
	// stream exists now, so a prune that looks next sees it, and this push waits for
	// the one that may not have before it writes anything (see pruner.clearStale). A
	// repository with nothing stored is in no prune's list of repositories to clear.
	if leftovers || owner != "" {
		if err := r.awaitPrune(ctx, repo); err != nil {
			return err
		}
		if owner, err = r.storedOwner(ctx, repo); err != nil {
			return err
		}
	}
	switch {
	case owner == uid:
		r.remember(repo, uid)
		return nil
	case owner != "":
		// A stream made again (by kubectl, or while no registry ran) over an earlier
		// tenant's storage.
		if err := r.clear(ctx, repo); err != nil {
			return err
		}
	}
	return r.setOwner(ctx, repo, uid)
}

// pruneWaitLimit bounds how long a push waits for a prune to finish with its
// repository.
const pruneWaitLimit = 5 * time.Minute

// awaitPrune waits until no prune holds the lock.
func (r *repositories) awaitPrune(ctx context.Context, repo string) error {
	if r.pruneLock == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, pruneWaitLimit)
	defer cancel()
	var held bool
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var err error
		held, err = r.pruneLock.Held(ctx)
		return err == nil && !held, err
	})
	if err != nil && held {
		return fmt.Errorf("repository %s: a prune still holds the storage's lock after %s; try again", repo, pruneWaitLimit)
	}
	return err
}

// hasLeftovers reports whether repo has an owner or links of its own in storage.
func (r *repositories) hasLeftovers(ctx context.Context, repo string) (bool, error) {
	owner, err := r.storedOwner(ctx, repo)
	if err != nil || owner != "" {
		return owner != "", err
	}
	dir := repositoryDir(repo)
	for _, p := range []string{path.Join(dir, "_manifests"), path.Join(dir, "_layers")} {
		_, err := r.driver.Stat(ctx, p)
		switch {
		case err == nil:
			return true, nil
		case !isPathNotFound(err):
			return false, err
		}
	}
	return false, nil
}

// storedOwner reads repo's owner from storage, where another replica may have
// changed it since this one remembered it; "" for none.
func (r *repositories) storedOwner(ctx context.Context, repo string) (string, error) {
	data, err := r.driver.GetContent(ctx, ownerPath(repo))
	if isPathNotFound(err) {
		return "", nil
	}
	return string(data), err
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
		namespace, name, ok := tokenauth.SplitRepository(repo)
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
	if err != nil && !isPathNotFound(err) {
		return err
	}
	for _, repo := range stale {
		owner, _ := r.owner(ctx, repo)
		r.Deleted(ctx, repo, owner)
	}
	return nil
}

// record points tag at ev in repo's stream.
func (r *repositories) record(ctx context.Context, repo, host, tag string, ev imageapi.TagEvent) error {
	namespace, name, _ := tokenauth.SplitRepository(repo)
	uid, err := r.owner(ctx, repo)
	if err != nil {
		return err
	}
	return r.streams.RecordTag(ctx, namespace, name, uid, host+"/"+repo, tag, ev)
}

// recordReferrer lists a referrer pushed to repo on its stream.
func (r *repositories) recordReferrer(ctx context.Context, repo string, subject digest.Digest, desc v1.Descriptor) {
	namespace, name, ok := tokenauth.SplitRepository(repo)
	if !ok {
		return
	}
	uid, err := r.owner(ctx, repo)
	if err == nil && uid != "" {
		err = r.streams.RecordReferrer(ctx, namespace, name, uid, imageapi.Referrer{Subject: subject.String(), Digest: desc.Digest.String(),
			MediaType: desc.MediaType, ArtifactType: desc.ArtifactType, Created: metav1.Now()})
	}
	if err != nil {
		r.log.Error("referrer not recorded on its image stream", "repository", repo, "referrer", desc.Digest, "err", err)
	}
}

// unrecord takes tag out of repo's stream.
func (r *repositories) unrecord(ctx context.Context, repo, tag string) error {
	namespace, name, _ := tokenauth.SplitRepository(repo)
	uid, err := r.owner(ctx, repo)
	if err != nil || uid == "" {
		return err
	}
	return r.streams.RemoveTag(ctx, namespace, name, uid, tag)
}

// tagEvent describes desc as a tag's event: digest, media type, and the artifact type
// read from the manifest (its artifactType, else its config's media type).
func (r *repositories) tagEvent(ctx context.Context, repo distribution.Repository, desc v1.Descriptor, created time.Time) imageapi.TagEvent {
	ev := imageapi.TagEvent{Created: metav1.NewTime(created), Digest: desc.Digest.String(), MediaType: desc.MediaType}
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return ev
	}
	if m, err := ms.Get(ctx, desc.Digest); err == nil {
		_, data, _ := m.Payload()
		var m manifestFields
		if json.Unmarshal(data, &m) == nil {
			ev.ArtifactType = m.artifactType()
			ev.Size = int64(len(data))
			if m.Config != nil {
				ev.Size += m.Config.Size
			}
			for _, l := range m.Layers {
				ev.Size += l.Size
			}
			if ev.MediaType == "" {
				ev.MediaType = m.MediaType
			}
		}
	}
	return ev
}

// ReconcileTags makes the stream of every servable repository show exactly the tags
// storage holds: storage is the truth for content, the stream for existence. It
// repairs what a crash between the two left, and reports how many streams it fixed.
func (r *repositories) ReconcileTags(ctx context.Context, host string) (int, error) {
	enumerator, ok := r.storage.(distribution.RepositoryEnumerator)
	if !ok {
		return 0, nil
	}
	fixed := 0
	err := enumerator.Enumerate(ctx, func(repo string) error {
		servable, err := r.Servable(ctx, repo)
		if err != nil || !servable {
			return err
		}
		changed, err := r.reconcileTags(ctx, repo, host)
		if err != nil {
			r.log.Warn("imagestream not reconciled with storage", "repository", repo, "err", err)
			return nil
		}
		if changed {
			fixed++
			r.log.Info("imagestream repaired to match storage", "repository", repo)
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return fixed, err
	}
	return fixed, nil
}

func (r *repositories) reconcileTags(ctx context.Context, repo, host string) (bool, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return false, err
	}
	drepo, err := r.storage.Repository(ctx, named)
	if err != nil {
		return false, err
	}
	// Pushes through this process wait; a push through another replica that storage
	// had not finished when it was read is kept by SyncTags.
	defer r.lock(repo)()
	readAt := time.Now()
	tagService := drepo.Tags(ctx)
	tags, err := tagService.All(ctx)
	if err != nil && !isTagsNotFound(err) {
		return false, err
	}
	want := map[string]imageapi.TagEvent{}
	for _, tag := range tags {
		desc, err := tagService.Get(ctx, tag)
		var unknown distribution.ErrTagUnknown
		if errors.As(err, &unknown) || err == nil && !r.manifestStored(ctx, repo, desc.Digest) {
			// Listed, but no manifest answers for it: the stream drops it at once, and
			// storage once nobody has touched it for a while.
			r.removeUnservableTag(ctx, repo, tag, tagService)
			continue
		}
		if err != nil {
			continue
		}
		created := time.Now()
		if fi, err := r.driver.Stat(ctx, path.Join(repositoryDir(repo), "_manifests/tags", tag, "current/link")); err == nil {
			created = fi.ModTime()
		}
		want[tag] = r.tagEvent(ctx, drepo, desc, created)
	}
	namespace, name, _ := tokenauth.SplitRepository(repo)
	uid, err := r.owner(ctx, repo)
	if err != nil {
		return false, err
	}
	return r.streams.SyncTags(ctx, namespace, name, uid, host+"/"+repo, want, readAt)
}

// unservableTagGrace is how long a tag may be listed without a manifest to answer
// for it before it is taken for what a crash left: distribution writes a tag's index
// link and then its current link, milliseconds apart, and acknowledges the push after
// both; a tag whose manifest is gone is what a crash or a lost write left.
const unservableTagGrace = 10 * time.Second

// removeUnservableTag deletes tag from repo's storage when no manifest answers for it
// — it has no current link (a push the process died in, never acknowledged), or its
// manifest is gone — and nothing under it changed for unservableTagGrace: otherwise it
// would stay listed in tags/list with nothing behind it. Pushes through this process
// wait on the repository's lock; the grace covers those through other replicas.
func (r *repositories) removeUnservableTag(ctx context.Context, repo, tag string, tags distribution.TagService) {
	dir := path.Join(repositoryDir(repo), "_manifests/tags", tag)
	var newest time.Time
	err := r.driver.Walk(ctx, dir, func(fi storagedriver.FileInfo) error {
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
		return nil
	})
	if err != nil || time.Since(newest) < r.tagGrace {
		return
	}
	// Still unservable now that the grace is known to have passed.
	if desc, err := tags.Get(ctx, tag); err == nil && r.manifestStored(ctx, repo, desc.Digest) {
		return
	}
	if err := r.driver.Delete(ctx, dir); err != nil && !isPathNotFound(err) {
		r.log.Warn("a tag with no manifest not removed", "repository", repo, "tag", tag, "err", err)
		return
	}
	r.log.Info("removed a tag no manifest answered for; its push was never acknowledged, or its manifest was lost", "repository", repo, "tag", tag)
}

// manifestStored reports whether repo serves manifest d, putting it back if a prune
// has it aside.
func (r *repositories) manifestStored(ctx context.Context, repo string, d digest.Digest) bool {
	stored := func() bool {
		_, lerr := r.driver.Stat(ctx, revisionLinkPath(repo, d))
		_, derr := r.driver.Stat(ctx, blobDataPath(d))
		return lerr == nil && derr == nil
	}
	return stored() || revive(ctx, r.driver, repo, d) && stored()
}

func isTagsNotFound(err error) bool {
	var notFound distribution.ErrRepositoryUnknown
	return errors.As(err, &notFound) || isPathNotFound(err)
}

// clear deletes what makes repo's content reachable — its tags, manifest and layer
// links, uploads and referrers index — and then its owner, last, so a crash half-way
// leaves an owner that no stream has and the next push or reconcile clears again.
// Blobs stay for garbage collection.
func (r *repositories) clear(ctx context.Context, repo string) error {
	dir := repositoryDir(repo)
	for _, p := range []string{
		path.Join(dir, "_manifests"), path.Join(dir, "_layers"), path.Join(dir, "_uploads"),
		path.Join(referrersRoot, repo, "subjects"), path.Join(referrersRoot, repo, "referrers"),
		ownerPath(repo),
	} {
		if err := r.driver.Delete(ctx, p); err != nil && !isPathNotFound(err) {
			return err
		}
	}
	r.remember(repo, "")
	return nil
}
