package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"k8s.io/apimachinery/pkg/types"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// fakeStreams is an ImageStream API whose informer and API agree, unless lag says
// the informer has not seen a stream yet.
type fakeStreams struct {
	mu      sync.Mutex
	uids    map[string]string // namespace/name → uid
	lag     map[string]bool   // not yet in the informer
	counter int
	// created, when set, runs after Ensure made a stream and before it returns.
	created func()
	// synced is what SyncTags was last told each stream holds.
	synced map[string]map[string]imageapi.TagEvent
}

func (f *fakeStreams) UID(ns, name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lag[ns+"/"+name] {
		return "", false
	}
	uid, ok := f.uids[ns+"/"+name]
	return uid, ok
}

func (f *fakeStreams) Get(_ context.Context, ns, name string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	uid, ok := f.uids[ns+"/"+name]
	return uid, ok, nil
}

func (f *fakeStreams) Ensure(_ context.Context, ns, name, _ string) (string, bool, error) {
	f.mu.Lock()
	if uid, ok := f.uids[ns+"/"+name]; ok {
		f.mu.Unlock()
		return uid, false, nil
	}
	f.counter++
	uid := fmt.Sprintf("uid-%d", f.counter)
	f.uids[ns+"/"+name] = uid
	created := f.created
	f.mu.Unlock()
	if created != nil {
		created()
	}
	return uid, true, nil
}

func (f *fakeStreams) RecordTag(context.Context, string, string, string, string, string, imageapi.TagEvent) error {
	return nil
}

func (f *fakeStreams) RemoveTag(context.Context, string, string, string, string) error { return nil }

func (f *fakeStreams) RecordReferrer(context.Context, string, string, string, imageapi.Referrer) error {
	return nil
}

func (f *fakeStreams) History(context.Context, string, string) ([]string, error) { return nil, nil }

func (f *fakeStreams) SyncTags(_ context.Context, ns, name, _, _ string, want map[string]imageapi.TagEvent, _ time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.synced == nil {
		f.synced = map[string]map[string]imageapi.TagEvent{}
	}
	f.synced[ns+"/"+name] = want
	return false, nil
}

func (f *fakeStreams) List(context.Context) ([]imageapi.ImageStream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []imageapi.ImageStream
	for key, uid := range f.uids {
		var is imageapi.ImageStream
		is.Namespace, is.Name, _ = strings.Cut(key, "/")
		is.UID = types.UID(uid)
		out = append(out, is)
	}
	return out, nil
}

func (f *fakeStreams) delete(ns, name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	uid := f.uids[ns+"/"+name]
	delete(f.uids, ns+"/"+name)
	return uid
}

// A repository is servable only while the stream that owns its storage exists; a
// stream made again gets an empty repository; a deletion missed while nothing ran is
// caught by Reconcile; a stream the informer has not seen yet is found in the API.
func TestRepositoriesBelongToTheirStream(t *testing.T) {
	ctx := context.Background()
	driver := inmemory.New()
	streams := &fakeStreams{uids: map[string]string{}, lag: map[string]bool{}}
	r := newRepositories(streams, driver, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	link := "/docker/registry/v2/repositories/d/old/_manifests/tags/secret-v1/current/link"
	servable := func() bool {
		t.Helper()
		ok, err := r.Servable(ctx, "d/old")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if servable() {
		t.Fatal("a repository nobody pushed to is servable")
	}
	if err := r.Ensure(ctx, "d/old", "h"); err != nil {
		t.Fatal(err)
	}
	if err := driver.PutContent(ctx, link, []byte("sha256:old")); err != nil {
		t.Fatal(err)
	}
	if !servable() {
		t.Fatal("a pushed repository is not servable")
	}

	// Deleted while no registry ran, then made again: nothing old is reachable.
	oldUID := streams.delete("d", "old")
	if servable() {
		t.Error("the repository of a deleted stream is servable")
	}
	if err := r.Ensure(ctx, "d/old", "h"); err != nil {
		t.Fatal(err)
	}
	if _, err := driver.GetContent(ctx, link); err == nil {
		t.Error("the old tenant's tag survived the new tenant's first push")
	}
	if !servable() {
		t.Error("the new tenant's repository is not servable")
	}
	r.Deleted(ctx, "d/old", oldUID) // a late event about the old stream changes nothing
	if !servable() {
		t.Error("a late delete event of the old stream cleared the new one")
	}

	// Missed deletion, found by Reconcile.
	_ = driver.PutContent(ctx, link, []byte("sha256:new"))
	streams.delete("d", "old")
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := driver.GetContent(ctx, link); err == nil {
		t.Error("Reconcile left the links of a deleted stream")
	}

	// A stream made by another replica that this one's informer has not seen yet.
	other := newRepositories(streams, driver, nil, r.log)
	if err := other.Ensure(ctx, "e/app", "h"); err != nil {
		t.Fatal(err)
	}
	streams.lag["e/app"] = true
	if ok, err := r.Servable(ctx, "e/app"); err != nil || !ok {
		t.Errorf("a stream not yet in the informer: %v %v", ok, err)
	}
}

// afterRead runs its hook once, after a read of path that comes once armed is set.
type afterRead struct {
	storagedriver.StorageDriver
	path  string
	armed atomic.Bool
	hook  func()
}

func (d *afterRead) GetContent(ctx context.Context, p string) ([]byte, error) {
	data, err := d.StorageDriver.GetContent(ctx, p)
	if p == d.path && d.armed.CompareAndSwap(true, false) {
		d.hook()
	}
	return data, err
}

// Two replicas take the first pushes of a new repository at once (crane uploads a
// config and a layer in parallel, through a balancer): replica a makes the stream and
// finds no owner; before it goes on, replica b finds the stream, writes the owner and
// stores an upload and a layer link. Replica a must not clear them.
func TestFirstPushesOnTwoReplicasKeepEachOthersUploads(t *testing.T) {
	ctx := context.Background()
	shared := inmemory.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	streams := &fakeStreams{uids: map[string]string{}, lag: map[string]bool{}}
	b := newRepositories(streams, shared, nil, log)
	upload := "/docker/registry/v2/repositories/n/app/_uploads/0b7d/startedat"
	layer := "/docker/registry/v2/repositories/n/app/_layers/sha256/aa/link"
	driverA := &afterRead{StorageDriver: shared, path: ownerPath("n/app"), hook: func() {
		if err := b.Ensure(ctx, "n/app", "h"); err != nil {
			t.Error(err)
		}
		for _, p := range []string{upload, layer} {
			if err := shared.PutContent(ctx, p, []byte("x")); err != nil {
				t.Error(err)
			}
		}
	}}
	a := newRepositories(streams, driverA, nil, log)
	streams.created = func() { driverA.armed.Store(true) }
	if err := a.Ensure(ctx, "n/app", "h"); err != nil {
		t.Fatal(err)
	}
	if driverA.armed.Load() {
		t.Fatal("replica a did not read the owner after making the stream; the test interleaves nothing")
	}
	for _, p := range []string{upload, layer} {
		if _, err := shared.GetContent(ctx, p); err != nil {
			t.Errorf("replica a, making the stream, removed what replica b stored for it: %s: %v", p, err)
		}
	}
	for _, r := range []*repositories{a, b} {
		if ok, err := r.Servable(ctx, "n/app"); err != nil || !ok {
			t.Errorf("the new repository is not servable: %v %v", ok, err)
		}
	}
}
