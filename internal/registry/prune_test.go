package registry

import (
	"context"
	"io"
	"log/slog"
	"path"
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

// store is a registry's storage for a test: distribution writing to memory, and the
// ownership of each repository.
type store struct {
	t       testing.TB
	ctx     context.Context
	driver  storagedriver.StorageDriver
	ns      distribution.Namespace
	streams *fakeStreams
	repos   *repositories
}

func newStore(t testing.TB) *store {
	return newStoreOn(t, inmemory.New())
}

func newStoreOn(t testing.TB, driver storagedriver.StorageDriver) *store {
	ctx := context.Background()
	ns, err := storage.NewRegistry(ctx, driver, storage.EnableDelete)
	if err != nil {
		t.Fatal(err)
	}
	streams := &fakeStreams{uids: map[string]string{}, lag: map[string]bool{}}
	return &store{t: t, ctx: ctx, driver: driver, ns: ns, streams: streams,
		repos: newRepositories(streams, driver, ns, slog.New(slog.NewTextHandler(io.Discard, nil)))}
}

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
	return r
}

// push stores an image of the given layers in repo, tagged tag unless it is "".
func (s *store) push(repo distribution.Repository, tag string, layers ...string) digest.Digest {
	s.t.Helper()
	blobs := repo.Blobs(s.ctx)
	cfg, err := blobs.Put(s.ctx, v1.MediaTypeImageConfig, []byte(`{"layers":"`+tag+`"}`))
	if err != nil {
		s.t.Fatal(err)
	}
	var descs []v1.Descriptor
	for _, l := range layers {
		d, err := blobs.Put(s.ctx, v1.MediaTypeImageLayer, []byte(l))
		if err != nil {
			s.t.Fatal(err)
		}
		descs = append(descs, d)
	}
	m, err := ocischema.FromStruct(ocischema.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cfg, Layers: descs})
	if err != nil {
		s.t.Fatal(err)
	}
	ms, _ := repo.Manifests(s.ctx)
	d, err := ms.Put(s.ctx, m)
	if err != nil {
		s.t.Fatal(err)
	}
	if tag != "" {
		if err := repo.Tags(s.ctx).Tag(s.ctx, tag, v1.Descriptor{Digest: d, MediaType: v1.MediaTypeImageManifest}); err != nil {
			s.t.Fatal(err)
		}
	}
	return d
}

func (s *store) has(d digest.Digest) bool {
	_, err := s.driver.Stat(s.ctx, blobDataPath(d))
	return err == nil
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

	dry, err := prune(s.ctx, s.repos, PruneOptions{UploadsOlderThan: time.Nanosecond, Settle: time.Millisecond}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Manifests != 1 || dry.Repositories != 1 || dry.Uploads != 1 || dry.Blobs < 4 {
		t.Errorf("dry run report %+v", dry)
	}
	if !s.has(dropped) || !s.has(goneManifest) {
		t.Fatal("a dry run deleted")
	}

	rep, err := prune(s.ctx, s.repos, PruneOptions{Confirm: true, UploadsOlderThan: time.Nanosecond, Settle: time.Millisecond}, "")
	t.Logf("dry run: %s; confirmed: %s", dry, rep)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Blobs != dry.Blobs || rep.Bytes != dry.Bytes {
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
	ms, _ := app.Manifests(s.ctx)
	if _, err := ms.Get(s.ctx, kept); err != nil {
		t.Errorf("the tagged image no longer reads: %v", err)
	}
	again, err := prune(s.ctx, s.repos, PruneOptions{Confirm: true, UploadsOlderThan: time.Nanosecond, Settle: time.Millisecond}, "")
	if err != nil || again.Blobs != 0 || again.Manifests != 0 {
		t.Errorf("a second prune found more: %+v %v", again, err)
	}
}

// A push that names a blob while the prune has it aside wins: the blob is put back.
func TestPruneNeverBreaksAPushInFlight(t *testing.T) {
	s := newStore(t)
	app := s.repo("a/app")
	old := s.push(app, "", "reused-layer")
	_ = old
	layer := digest.FromString("reused-layer")
	done := make(chan PruneReport)
	go func() {
		rep, err := prune(s.ctx, s.repos, PruneOptions{Confirm: true, Settle: 300 * time.Millisecond}, "")
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	// While the blob is aside, a manifest that checked it a moment before is stored.
	for deadline := time.Now().Add(5 * time.Second); s.has(layer) && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	cfg := digest.FromString("cfg")
	_ = s.driver.PutContent(s.ctx, blobDataPath(cfg), []byte("cfg"))
	m, _ := ocischema.FromStruct(ocischema.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cfg, Size: 3},
		Layers: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: layer, Size: int64(len("reused-layer"))}}})
	_, payload, _ := m.Payload()
	md := digest.FromBytes(payload)
	_ = s.driver.PutContent(s.ctx, blobDataPath(md), payload)
	_ = s.driver.PutContent(s.ctx, path.Join(v2Root, "repositories/a/app/_manifests/revisions/sha256", md.Encoded(), "link"), []byte(md))
	<-done
	if !s.has(layer) {
		t.Error("the prune deleted a blob a manifest stored during it names")
	}
}

// A push that asks for a blob a prune has set aside, or puts a manifest naming it,
// gets it back: the client skips an upload the prune would otherwise have broken.
func TestPushRevivesWhatAPruneSetAside(t *testing.T) {
	s := newStore(t)
	guarded, err := newPruneGuard(s.ctx, s.repo("a/app"), map[string]any{pruneGuardOptionStore: s.driver})
	if err != nil {
		t.Fatal(err)
	}
	manifest := s.push(guarded, "", "layer-a")
	asked, named := digest.FromString("layer-a"), digest.FromString(`{"layers":""}`)
	for _, d := range []digest.Digest{asked, named} {
		if err := s.driver.Move(s.ctx, blobDataPath(d), blobDataPath(d)+pruneSuffix); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := guarded.Blobs(s.ctx).Stat(s.ctx, asked); err != nil || !s.has(asked) {
		t.Errorf("HEAD of a blob set aside: %v (back in place: %v)", err, s.has(asked))
	}
	ms, _ := guarded.Manifests(s.ctx)
	m, err := ms.Get(s.ctx, manifest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Put(s.ctx, m); err != nil || !s.has(named) {
		t.Errorf("manifest PUT naming a blob set aside: %v (back in place: %v)", err, s.has(named))
	}
	if _, err := guarded.Blobs(s.ctx).Stat(s.ctx, digest.FromString("never stored")); err != distribution.ErrBlobUnknown {
		t.Errorf("a blob never stored: %v, want blob unknown", err)
	}
}
