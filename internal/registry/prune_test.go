package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/manifest/ocischema"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// store is a registry's storage for a test: distribution writing to memory (through
// a driver whose operations a test can hook), and the ownership of each repository.
type store struct {
	t       testing.TB
	ctx     context.Context
	driver  *hookDriver
	ns      distribution.Namespace
	streams *fakeStreams
	repos   *repositories
	lock    *fakeLock
}

func newStore(t testing.TB) *store {
	return newStoreOn(t, inmemory.New())
}

func newStoreOn(t testing.TB, driver storagedriver.StorageDriver) *store {
	ctx := context.Background()
	hooked := &hookDriver{StorageDriver: driver}
	ns, err := storage.NewRegistry(ctx, hooked, storage.EnableDelete)
	if err != nil {
		t.Fatal(err)
	}
	streams := &fakeStreams{uids: map[string]string{}, lag: map[string]bool{}}
	s := &store{t: t, ctx: ctx, driver: hooked, ns: ns, streams: streams, lock: &fakeLock{},
		repos: newRepositories(streams, hooked, ns, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	s.repos.pruneLock = s.lock
	return s
}

// repo is repository name, its stream made, as the registry serves it: through the
// prune guard.
func (s *store) repo(name string) distribution.Repository {
	s.t.Helper()
	if err := s.repos.Ensure(s.ctx, name, "h"); err != nil {
		s.t.Fatal(err)
	}
	named, _ := reference.WithName(name)
	r, err := s.ns.Repository(s.ctx, named)
	if err != nil {
		s.t.Fatal(err)
	}
	guarded, err := newPruneGuard(s.ctx, r, map[string]any{pruneGuardOptionStore: storagedriver.StorageDriver(s.driver)})
	if err != nil {
		s.t.Fatal(err)
	}
	return guarded
}

// push stores an image of the given layers in repo as the registry does (see
// pushPinned), tagged tag unless it is "".
func (s *store) push(repo distribution.Repository, tag string, layers ...string) digest.Digest {
	s.t.Helper()
	d, err := s.pushPinned(repo, tag, nil, layers...)
	if err != nil {
		s.t.Fatal(err)
	}
	return d
}

// pushPinned pushes an image as the registry does: each blob uploaded (its commit
// pinned by the guard), then the manifest pinned from before it is stored until its
// tag is, as pinnedWrites does; between, when set, runs after the manifest is stored
// and before it is tagged.
func (s *store) pushPinned(repo distribution.Repository, tag string, between func(), layers ...string) (digest.Digest, error) {
	upload := func(mediaType, content string) (v1.Descriptor, error) {
		w, err := repo.Blobs(s.ctx).Create(s.ctx)
		if err != nil {
			return v1.Descriptor{}, err
		}
		if _, err := w.Write([]byte(content)); err != nil {
			return v1.Descriptor{}, err
		}
		desc, err := w.Commit(s.ctx, v1.Descriptor{Digest: digest.FromString(content)})
		desc.MediaType = mediaType
		return desc, err
	}
	cfg, err := upload(v1.MediaTypeImageConfig, `{"tag":"`+tag+`","layers":"`+strings.Join(layers, ",")+`"}`)
	if err != nil {
		return "", err
	}
	var descs []v1.Descriptor
	for _, l := range layers {
		d, err := upload(v1.MediaTypeImageLayer, l)
		if err != nil {
			return "", err
		}
		descs = append(descs, d)
	}
	return s.putManifest(repo, tag, between, ocischema.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cfg, Layers: descs})
}

// putManifest puts a manifest naming blobs already stored, pinned as pinnedWrites
// pins it.
func (s *store) putManifest(repo distribution.Repository, tag string, between func(), manifest ocischema.Manifest) (digest.Digest, error) {
	m, err := ocischema.FromStruct(manifest)
	if err != nil {
		return "", err
	}
	_, payload, _ := m.Payload()
	ctx, p, err := fence{s.driver}.pin(s.ctx, manifestPin(repo.Named().Name(), payload))
	if err != nil {
		return "", err
	}
	defer func() { _ = p.release(s.ctx) }()
	ms, _ := repo.Manifests(ctx)
	d, err := ms.Put(ctx, m)
	if err != nil {
		return "", err
	}
	if between != nil {
		between()
	}
	if tag != "" {
		if err := repo.Tags(ctx).Tag(ctx, tag, v1.Descriptor{Digest: d, MediaType: v1.MediaTypeImageManifest}); err != nil {
			return "", err
		}
	}
	return d, nil
}

// imageOf is the manifest of an image of config and one layer of the given content,
// already stored.
func imageOf(config v1.Descriptor, layer string) ocischema.Manifest {
	return ocischema.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: config,
		Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: digest.FromString(layer), Size: int64(len(layer))}}}
}

// pullable reports whether repo serves ref (a tag or digest) whole: manifest, config
// and layers.
func (s *store) pullable(repo distribution.Repository, ref string) error {
	d, err := digest.Parse(ref)
	if err != nil {
		desc, err := repo.Tags(s.ctx).Get(s.ctx, ref)
		if err != nil {
			return err
		}
		d = desc.Digest
	}
	ms, _ := repo.Manifests(s.ctx)
	m, err := ms.Get(s.ctx, d)
	if err != nil {
		return err
	}
	for _, ref := range m.References() {
		data, err := repo.Blobs(s.ctx).Get(s.ctx, ref.Digest)
		if err != nil {
			return err
		}
		if digest.FromBytes(data) != ref.Digest {
			return errors.New("blob " + ref.Digest.String() + " does not match its digest")
		}
	}
	return nil
}

func (s *store) has(d digest.Digest) bool {
	_, err := s.driver.Stat(s.ctx, blobDataPath(d))
	return err == nil
}

// prune runs a prune as adm prune does, holding the test's lock.
func (s *store) prune(opts PruneOptions) (PruneReport, error) {
	return prune(s.ctx, s.repos, s.lock, opts, "")
}

// leftovers lists what a finished prune must not leave: files set aside, pins, its
// marker.
func (s *store) leftovers() []string {
	var out []string
	_ = s.driver.StorageDriver.Walk(s.ctx, "/", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && (strings.HasSuffix(fi.Path(), pruneSuffix) || strings.HasPrefix(fi.Path(), fenceRoot+"/")) {
			out = append(out, fi.Path())
		}
		return nil
	})
	return out
}

// hookDriver runs a test's hook once, at a chosen point of a prune.
type hookDriver struct {
	storagedriver.StorageDriver
	mu    sync.Mutex
	hooks []hook
}

type hook struct {
	// when matches an operation ("list", "move", "delete") on a path; after, it runs
	// once the operation is done, else before it.
	when  func(op, path string) bool
	after bool
	run   func()
}

// on arms a hook.
func (d *hookDriver) on(after bool, when func(op, path string) bool, run func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hooks = append(d.hooks, hook{when: when, after: after, run: run})
}

func (d *hookDriver) fire(op, p string, after bool) {
	d.mu.Lock()
	var run []func()
	kept := d.hooks[:0]
	for _, h := range d.hooks {
		if h.after == after && h.when(op, p) {
			run = append(run, h.run)
		} else {
			kept = append(kept, h)
		}
	}
	d.hooks = kept
	d.mu.Unlock()
	for _, f := range run {
		f()
	}
}

func (d *hookDriver) List(ctx context.Context, p string) ([]string, error) {
	d.fire("list", p, false)
	defer d.fire("list", p, true)
	return d.StorageDriver.List(ctx, p)
}

func (d *hookDriver) Move(ctx context.Context, from, to string) error {
	d.fire("move", to, false)
	defer d.fire("move", to, true)
	return d.StorageDriver.Move(ctx, from, to)
}

func (d *hookDriver) Delete(ctx context.Context, p string) error {
	d.fire("delete", p, false)
	defer d.fire("delete", p, true)
	return d.StorageDriver.Delete(ctx, p)
}

// nthPinsRead matches the n-th read of the pins (1: before the marker is written, 2:
// before the mark, 3: after the set-aside).
func nthPinsRead(n int) func(op, p string) bool {
	var seen atomic.Int32
	return func(op, p string) bool { return op == "list" && p == pinsDir && int(seen.Add(1)) == n }
}

// firstSetAside matches the prune's first rename of anything aside.
func firstSetAside(op, p string) bool { return op == "move" && strings.HasSuffix(p, pruneSuffix) }

// fakeLock is a PruneLock in memory; held makes Held say so that many more times.
type fakeLock struct {
	mu      sync.Mutex
	holding bool
	held    int
	asked   int
}

func (l *fakeLock) Hold(ctx context.Context, _ bool, fn func(context.Context) error) error {
	l.mu.Lock()
	l.holding = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.holding = false
		l.mu.Unlock()
	}()
	return fn(ctx)
}

func (l *fakeLock) Held(context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked++
	if l.held > 0 {
		l.held--
		return true, nil
	}
	return l.holding, nil
}

func TestPruneReclaimsOnlyWhatNothingReaches(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	kept := s.push(app, "v1", "shared", "only-v1")
	dropped := s.push(app, "", "shared", "only-untagged")
	gone := s.repo("gone/app")
	goneManifest := s.push(gone, "v1", "only-gone")
	s.streams.delete("gone", "app")
	upload, err := app.Blobs(s.ctx).Create(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = upload.Write([]byte("abandoned"))

	dry, err := s.prune(PruneOptions{UploadsOlderThan: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Manifests != 1 || dry.Repositories != 1 || dry.Uploads != 1 || dry.Blobs < 4 {
		t.Errorf("dry run report %+v", dry)
	}
	if !s.has(dropped) || !s.has(goneManifest) {
		t.Fatal("a dry run deleted")
	}

	rep, err := s.prune(PruneOptions{Confirm: true, UploadsOlderThan: time.Nanosecond})
	t.Logf("dry run: %s; confirmed: %s", dry, rep)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != dry.Blobs || rep.Bytes != dry.Bytes || rep.Manifests != dry.Manifests {
		t.Errorf("confirmed %+v, dry run said %+v", rep, dry)
	}
	for name, d := range map[string]digest.Digest{"the untagged manifest": dropped, "the deleted stream's manifest": goneManifest,
		"its layer": digest.FromString("only-gone"), "the untagged manifest's own layer": digest.FromString("only-untagged")} {
		if s.has(d) {
			t.Errorf("%s survived", name)
		}
	}
	for name, d := range map[string]digest.Digest{"the tagged manifest": kept, "its layer": digest.FromString("only-v1"),
		"the shared layer": digest.FromString("shared")} {
		if !s.has(d) {
			t.Errorf("%s was deleted", name)
		}
	}
	if err := s.pullable(app, "v1"); err != nil {
		t.Errorf("the tagged image no longer pulls: %v", err)
	}
	if left := s.leftovers(); len(left) > 0 {
		t.Errorf("the prune left %v", left)
	}
	again, err := s.prune(PruneOptions{Confirm: true, UploadsOlderThan: time.Nanosecond})
	if err != nil || again.Blobs != 0 || again.Manifests != 0 {
		t.Errorf("a second prune found more: %+v %v", again, err)
	}
}

// The race that lost 116 of 767 pushes: a manifest is stored, and its tag written only
// after the prune has read the repository's tags (the ImageStream is updated between).
// Its pin, written before the manifest, keeps it: whole prunes run in the gap.
func TestPruneKeepsAManifestWhoseTagLandsAfterTheMark(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	var reports []PruneReport
	d, err := s.pushPinned(app, "v1", func() {
		for range 2 {
			rep, err := s.prune(PruneOptions{Confirm: true})
			if err != nil {
				t.Error(err)
			}
			reports = append(reports, rep)
		}
	}, "layer-1", "layer-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prunes between the manifest and its tag: %v", reports)
	if err := s.pullable(app, "v1"); err != nil {
		t.Errorf("push %s, acknowledged after two prunes ran between its manifest and its tag: %v", d, err)
	}
}

// A push that finishes while the prune runs — after it read the tags, before it set
// anything aside — leaves its pin done for the prune, which keeps what it names,
// although the tag came too late for the mark: here the image reuses an untagged
// layer the mark found to be garbage.
func TestPruneKeepsWhatAPushFinishedDuringItNames(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	s.push(app, "", "garbage-layer")
	var pushed digest.Digest
	s.driver.on(true, func(op, p string) bool { return op == "list" && strings.HasSuffix(p, "/_manifests/tags") }, func() {
		d, err := s.pushPinned(app, "late", nil, "garbage-layer", "new-layer")
		if err != nil {
			t.Error(err)
		}
		pushed = d
	})
	rep, err := s.prune(PruneOptions{Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if pushed == "" {
		t.Fatal("the push did not run during the prune")
	}
	t.Logf("prune: %+v", rep)
	if err := s.pullable(app, "late"); err != nil {
		t.Errorf("a push acknowledged during the prune: %v", err)
	}
	if left := s.leftovers(); len(left) > 0 {
		t.Errorf("the prune left %v", left)
	}
}

// A layer deleted with its image, still stored as garbage, is uploaded again into a
// repository made while a prune runs (distribution keeps the stored file and its old
// time); the push's commit and manifest are pinned, so the prune keeps it.
func TestPruneKeepsABlobUploadedAgainIntoANewRepository(t *testing.T) {
	s := newStore(t)
	old := s.repo("a/old")
	s.push(old, "", "reused")
	s.driver.on(true, func(op, p string) bool { return op == "list" && p == path.Join(v2Root, "repositories") }, func() {
		fresh := s.repo("b/fresh")
		if _, err := s.pushPinned(fresh, "v1", nil, "reused"); err != nil {
			t.Error(err)
		}
	})
	if _, err := s.prune(PruneOptions{Confirm: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.pullable(s.repo("b/fresh"), "v1"); err != nil {
		t.Errorf("an image pushed into a repository made during the prune: %v", err)
	}
}

// A push that begins after the prune read the pins the second time finds what it
// names aside, puts it back and is stored; the prune's delete then finds nothing to
// delete. A push that comes after the delete is refused, never acknowledged.
func TestAPushAfterTheSecondPinReadPutsBackWhatItNames(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	s.push(app, "", "aside-layer")
	s.push(app, "", "other")
	layer := digest.FromString("aside-layer")
	var cfg v1.Descriptor // the late push's config
	s.driver.on(true, nthPinsRead(3), func() {
		if s.has(layer) {
			t.Error("the layer is not aside when the pins are read again")
		}
		var err error
		if cfg, err = app.Blobs(s.ctx).Put(s.ctx, v1.MediaTypeImageConfig, []byte(`{"late":true}`)); err != nil {
			t.Error(err)
		}
		if _, err := s.putManifest(app, "late", nil, imageOf(cfg, "aside-layer")); err != nil {
			t.Errorf("a push naming a blob set aside: %v", err)
		}
	})
	rep, err := s.prune(PruneOptions{Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kept == 0 {
		t.Errorf("the prune reports nothing put back: %+v", rep)
	}
	if err := s.pullable(app, "late"); err != nil {
		t.Errorf("a push acknowledged after the second pin read: %v", err)
	}
	// Now the other layer is gone: a manifest naming it is refused.
	_, err = s.putManifest(app, "refused", nil, imageOf(cfg, "other"))
	var verification distribution.ErrManifestVerification
	if !errors.As(err, &verification) {
		t.Errorf("a manifest naming a deleted blob: %v, want it refused", err)
	}
}

// A prune that stops half way (its lock lost, its process killed) hides nothing for
// long: whoever reaches what it set aside puts it back, and the next prune puts back
// what is live and deletes the rest.
func TestAPruneStoppedHalfWayHidesNothing(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	s.push(app, "v1", "kept")
	s.push(app, "", "garbage")
	ctx, cancel := context.WithCancel(s.ctx)
	var asideLayer digest.Digest
	s.driver.on(true, firstSetAside, cancel)
	if _, err := prune(ctx, s.repos, s.lock, PruneOptions{Confirm: true}, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("a prune whose context ended: %v", err)
	}
	// Something is aside; the tagged image reads.
	for _, p := range s.leftovers() {
		if strings.HasSuffix(p, "/data"+pruneSuffix) {
			asideLayer = digest.NewDigestFromEncoded(digest.SHA256, path.Base(path.Dir(p)))
		}
	}
	if asideLayer == "" {
		t.Fatalf("nothing was set aside: %v", s.leftovers())
	}
	if err := s.pullable(app, "v1"); err != nil {
		t.Errorf("the tagged image, after a prune stopped: %v", err)
	}
	rep, err := s.prune(PruneOptions{Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the next prune: %+v", rep)
	if left := s.leftovers(); len(left) > 0 {
		t.Errorf("the next prune left %v", left)
	}
	if s.has(digest.FromString("garbage")) {
		t.Error("the garbage layer survived the next prune")
	}
	if err := s.pullable(app, "v1"); err != nil {
		t.Errorf("the tagged image, after the next prune: %v", err)
	}
}

// A repository whose stream was deleted is cleared, unless, by the time the prune
// clears it, the stream exists again and owns it: a new tenant's push.
func TestPruneClearsAStaleRepositoryOnlyWhileItsStreamIsGone(t *testing.T) {
	s := newStore(t)
	s.push(s.repo("n/app"), "v1", "old-tenant")
	s.streams.delete("n", "app")
	s.driver.on(true, func(op, p string) bool { return op == "list" && p == path.Join(v2Root, "blobs") }, func() {
		// The new tenant's stream and owner, as Ensure writes them (it waits for the
		// lock only when a prune may not have seen its stream).
		uid, _, _ := s.streams.Ensure(s.ctx, "n", "app", "h")
		if err := s.repos.clear(s.ctx, "n/app"); err != nil {
			t.Error(err)
		}
		if err := s.repos.setOwner(s.ctx, "n/app", uid); err != nil {
			t.Error(err)
		}
	})
	rep, err := s.prune(PruneOptions{Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repositories != 0 {
		t.Errorf("the prune cleared a repository whose stream exists again: %+v", rep)
	}
	if owner, _ := s.repos.storedOwner(s.ctx, "n/app"); owner == "" {
		t.Error("the new tenant's ownership was cleared")
	}
}

// A push that makes a repository's stream over an earlier tenant's storage, while a
// prune holds the lock, waits for it before it writes the repository's owner; a push
// into a repository with nothing stored, or one its stream owns, does not.
func TestEnsureWaitsForAPruneHoldingTheLock(t *testing.T) {
	s := newStore(t)
	s.push(s.repo("n/app"), "v1", "old-tenant")
	s.streams.delete("n", "app")
	s.lock.held = 2
	if err := s.repos.Ensure(s.ctx, "n/app", "h"); err != nil {
		t.Fatal(err)
	}
	if s.lock.asked != 3 {
		t.Errorf("the lock was asked %d times, want until it was free (3)", s.lock.asked)
	}
	for _, repo := range []string{"n/app", "n/new"} {
		s.lock.held, s.lock.asked = 1, 0
		if err := s.repos.Ensure(s.ctx, repo, "h"); err != nil || s.lock.asked != 0 {
			t.Errorf("Ensure of %s: %v, asked the lock %d times", repo, err, s.lock.asked)
		}
	}
}

// Whatever a prune set aside comes back to whoever reaches it: a HEAD of the blob, a
// read of the manifest, a manifest PUT naming it.
func TestPushRevivesWhatAPruneSetAside(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	manifest := s.push(app, "", "layer-a")
	asked := digest.FromString("layer-a")
	setAside := func(paths ...string) {
		for _, p := range paths {
			if err := s.driver.Move(s.ctx, p, p+pruneSuffix); err != nil {
				t.Fatal(err)
			}
		}
	}
	setAside(blobDataPath(asked), layerLinkPath("a/app", asked))
	if _, err := app.Blobs(s.ctx).Stat(s.ctx, asked); err != nil || !s.has(asked) {
		t.Errorf("HEAD of a blob set aside: %v (back in place: %v)", err, s.has(asked))
	}
	setAside(blobDataPath(manifest), revisionLinkPath("a/app", manifest))
	ms, _ := app.Manifests(s.ctx)
	m, err := ms.Get(s.ctx, manifest)
	if err != nil {
		t.Fatalf("GET of a manifest set aside: %v", err)
	}
	setAside(blobDataPath(asked), layerLinkPath("a/app", asked))
	if _, err := s.putManifest(app, "", nil, m.(*ocischema.DeserializedManifest).Manifest); err != nil || !s.has(asked) {
		t.Errorf("manifest PUT naming a blob set aside: %v (back in place: %v)", err, s.has(asked))
	}
	if _, err := app.Blobs(s.ctx).Stat(s.ctx, digest.FromString("never stored")); err != distribution.ErrBlobUnknown {
		t.Errorf("a blob never stored: %v, want blob unknown", err)
	}
}

// An ImageStream never lists a tag the registry cannot serve: a tag whose manifest is
// gone leaves the stream at the next reconcile, and storage once nothing under it has
// changed for the grace.
func TestReconcileDropsATagWhoseManifestIsGone(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	s.push(app, "kept", "layer-k")
	lost := s.push(app, "lost", "layer-l")
	if err := s.driver.Delete(s.ctx, path.Dir(revisionLinkPath("a/app", lost))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.repos.ReconcileTags(s.ctx, "h"); err != nil {
		t.Fatal(err)
	}
	want := s.streams.synced["a/app"]
	if _, listed := want["lost"]; listed || len(want) != 1 {
		t.Errorf("the stream is told it holds %v; want only the tag a manifest answers for", want)
	}
	if _, err := app.Tags(s.ctx).Get(s.ctx, "lost"); err != nil {
		t.Fatalf("the tag left storage within its grace: %v", err)
	}
	s.repos.tagGrace = 0
	if _, err := s.repos.ReconcileTags(s.ctx, "h"); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Tags(s.ctx).Get(s.ctx, "lost"); err == nil {
		t.Error("a tag no manifest answers for is still in storage after its grace")
	}
	if err := s.pullable(app, "kept"); err != nil {
		t.Errorf("the other tag: %v", err)
	}
}
