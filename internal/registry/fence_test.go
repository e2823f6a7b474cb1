package registry

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// A write's pin goes when it ends, unless a prune is running: then it stays, marked
// done, for that prune; the next prune drops it before it begins, since the write's
// tags are in storage by then. A pin never released is dropped once an hour old; a
// pin still being written is not read.
func TestPinsLiveAsLongAsAPruneMayNeedThem(t *testing.T) {
	ctx := context.Background()
	f := fence{inmemory.New()}
	d := digest.FromString("layer")
	count := func() (all, done int) {
		t.Helper()
		pins, err := f.pins(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pins {
			if p.done {
				done++
			}
		}
		return len(pins), done
	}

	_, p, err := f.pin(ctx, blobPin("a/app", d))
	if err != nil {
		t.Fatal(err)
	}
	pins, _ := f.pins(ctx)
	if len(pins) != 1 || pins[0].Repository != "a/app" || len(pins[0].Digests) != 1 || pins[0].Digests[0] != d || pins[0].done {
		t.Fatalf("a pin in flight reads %+v", pins)
	}
	if err := p.release(ctx); err != nil {
		t.Fatal(err)
	}
	if all, _ := count(); all != 0 {
		t.Errorf("a write that ended with no prune running left %d pins", all)
	}

	if err := f.begin(ctx, "prune 1"); err != nil {
		t.Fatal(err)
	}
	_, p, _ = f.pin(ctx, blobPin("a/app", d))
	if err := p.release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.pin(ctx, blobPin("a/app", d)); err != nil { // a write in flight
		t.Fatal(err)
	}
	_ = f.driver.PutContent(ctx, pinsDir+"/0123456789abcdef0123456789abcdef", []byte(`{"repos`)) // being written
	if all, done := count(); all != 2 || done != 1 {
		t.Errorf("while a prune runs: %d pins, %d done; want the ended write's pin done and the one in flight", all, done)
	}
	// The prune stops without ending (killed); the next one drops the done pin first.
	if err := f.begin(ctx, "prune 2"); err != nil {
		t.Fatal(err)
	}
	if all, done := count(); all != 1 || done != 0 {
		t.Errorf("a new prune began with %d pins, %d done; want only the one in flight", all, done)
	}
	seen, _ := f.pins(ctx)
	if err := f.end(ctx, seen, time.Now()); err != nil {
		t.Fatal(err)
	}
	if all, _ := count(); all != 1 {
		t.Errorf("a prune's end dropped a pin of a write in flight")
	}
	if running, _ := f.running(ctx); running {
		t.Error("the prune's marker stayed after its end")
	}
	seen, _ = f.pins(ctx)
	if err := f.end(ctx, seen, time.Now().Add(pinLifetime)); err != nil {
		t.Fatal(err)
	}
	if all, _ := count(); all != 0 {
		t.Errorf("a pin an hour old, never released, stayed")
	}
}

// A walk skips what disappears beneath it, however the driver reports it.
func TestWalkSkipsWhatDisappears(t *testing.T) {
	for _, err := range []error{
		storagedriver.PathNotFoundError{Path: "/x"},
		storagedriver.Error{DriverName: "filesystem", Detail: &fs.PathError{Op: "readdirent", Path: "/x", Err: syscall.ENOENT}},
	} {
		if !gone(err) {
			t.Errorf("%v is not taken for a path that went away", err)
		}
	}
	if gone(storagedriver.Error{DriverName: "filesystem", Detail: &fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}}) {
		t.Error("permission denied is taken for a path that went away")
	}
}

// A write holding a pin is cut at pinnedWithin, well before a prune would take its
// pin for a dead writer's.
func TestAPinnedWriteHasADeadline(t *testing.T) {
	ctx, _, err := fence{inmemory.New()}.pin(context.Background(), blobPin("a/app", digest.FromString("x")))
	if err != nil {
		t.Fatal(err)
	}
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > pinnedWithin || pinnedWithin >= pinLifetime {
		t.Errorf("a pinned write's deadline: %v (set: %v); want within %s, itself under %s", deadline, ok, pinnedWithin, pinLifetime)
	}
}

// A HEAD of a blob keeps it from the prune running now: its pin is in storage before
// the blob is looked up (so the prune either reads it or set the blob aside before,
// and the lookup puts it back), and is left done for the prune. With no prune running
// nothing is pinned, and a link a minute old is refreshed. A caller without pull
// makes the registry write nothing.
func TestHeadOfABlobKeepsItFromAPrune(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	f := fence{filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})}
	d := digest.FromString("layer")
	var pinsAtLookup []pinned
	lookup := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pinsAtLookup, _ = f.pins(ctx)
		w.WriteHeader(http.StatusOK)
	})
	h := &pinnedWrites{next: lookup, fence: f, verifier: allowPull{}, log: slog.New(slog.DiscardHandler)}
	head := func(auth string) int {
		r := httptest.NewRequest(http.MethodHead, "/v2/a/app/blobs/"+d.String(), nil)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	link := layerLinkPath("a/app", d)
	if err := f.driver.PutContent(ctx, link, []byte(d)); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * touchAfter)
	if err := os.Chtimes(filepath.Join(root, link), old, old); err != nil {
		t.Fatal(err)
	}
	if code := head("pull"); code != http.StatusOK || len(pinsAtLookup) != 0 {
		t.Errorf("a HEAD with no prune running: %d, %d pins", code, len(pinsAtLookup))
	}
	if pins, _ := f.list(ctx); len(pins) != 0 {
		t.Errorf("a HEAD with no prune running left %d pins", len(pins))
	}
	if fi, err := f.driver.Stat(ctx, link); err != nil || !fi.ModTime().After(old) {
		t.Errorf("the link a minute old was not refreshed: %v", err)
	}
	if err := f.begin(ctx, "prune"); err != nil {
		t.Fatal(err)
	}
	if code := head("pull"); code != http.StatusOK || len(pinsAtLookup) != 1 || pinsAtLookup[0].Digests[0] != d {
		t.Errorf("a HEAD while a prune runs looked the blob up with pins %+v (answer %d); want its own pin already stored", pinsAtLookup, code)
	}
	pins, err := f.pins(ctx)
	if err != nil || len(pins) != 1 || !pins[0].done || pins[0].Digests[0] != d {
		t.Errorf("a HEAD while a prune runs left %+v (%v); want one done pin of the blob", pins, err)
	}
	head("none")
	if after, _ := f.list(ctx); len(after) != 1 {
		t.Errorf("a HEAD without pull while a prune runs left %d pins, want only the earlier one", len(after))
	}
}

// allowPull grants everything to a request whose Authorization says "pull".
type allowPull struct{}

func (allowPull) Authorized(r *http.Request, _ ...auth.Access) (*auth.Grant, error) {
	if r.Header.Get("Authorization") != "pull" {
		return nil, errors.New("denied")
	}
	return &auth.Grant{}, nil
}
