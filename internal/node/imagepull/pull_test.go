package imagepull

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// serve runs go-containerregistry's in-memory registry behind wrap and pushes a random
// 3-layer image to it as <host>/ns/app:1.
func serve(t *testing.T, wrap func(http.Handler) http.Handler) (string, v1.Image) {
	t.Helper()
	srv := httptest.NewServer(wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/ns/app:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return host + "/ns/app:1", img
}

func newPuller(t *testing.T) *Puller {
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Puller{Store: store}
}

func TestPullStoresEachBlobOnceAndVerifies(t *testing.T) {
	image, img := serve(t, func(h http.Handler) http.Handler { return h })
	p := newPuller(t)
	res, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if res.Manifest.Digest != want || res.Transferred < 3*256<<10 {
		t.Fatalf("pulled %s (%d bytes), want %s and every layer", res.Manifest.Digest, res.Transferred, want)
	}
	if _, ok := p.Store.Lookup(image); !ok {
		t.Fatal("image not in the store after the pull")
	}
	if !p.Store.Recorded(want).Allows(nil) {
		t.Error("an anonymous pull should let anyone use the image")
	}
	again, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	if err != nil || again.Transferred != 0 {
		t.Fatalf("second pull transferred %d bytes (err %v), want 0", again.Transferred, err)
	}
}

func TestInterruptedBlobIsResumedNotTrusted(t *testing.T) {
	var cut atomic.Bool
	cut.Store(true)
	var ranged atomic.Int32
	image, img := serve(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				ranged.Add(1)
			}
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet && cut.Load() {
				h.ServeHTTP(harness.CutAfter(w, 100<<10), r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	p := newPuller(t)
	_, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	var perr *Error
	if !errors.As(err, &perr) || perr.Reason != ReasonTransferInterrupted || !strings.Contains(perr.Message, "stopped after") {
		t.Fatalf("got %v, want a transfer interrupted part way", err)
	}
	partials, _ := filepath.Glob(filepath.Join(p.Store.Dir(), "blobs", "sha256", "*.partial"))
	if len(partials) == 0 {
		t.Fatal("no partial blob kept")
	}
	if _, ok := p.Store.Lookup(image); ok {
		t.Fatal("an interrupted image is listed as present")
	}
	cut.Store(false)
	res, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	if err != nil {
		t.Fatal(err)
	}
	if ranged.Load() == 0 {
		t.Error("the second pull did not resume with a Range request")
	}
	want, _ := img.Digest()
	if res.Manifest.Digest != want {
		t.Fatalf("digest %s, want %s", res.Manifest.Digest, want)
	}
}

func TestCorruptBlobIsRefused(t *testing.T) {
	image, _ := serve(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
				h.ServeHTTP(&corrupting{ResponseWriter: w}, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	p := newPuller(t)
	_, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	var perr *Error
	if !errors.As(err, &perr) || perr.Reason != ReasonDigestMismatch {
		t.Fatalf("got %v, want a digest mismatch", err)
	}
	if files, _ := os.ReadDir(filepath.Join(p.Store.Dir(), "blobs", "sha256")); len(files) != 0 {
		t.Errorf("corrupt content left in the store: %d files", len(files))
	}
}

func TestFailuresAreExplained(t *testing.T) {
	deny := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		})
	}
	image, _ := serve(t, func(h http.Handler) http.Handler { return h })
	denied := httptest.NewServer(deny(nil))
	defer denied.Close()
	deniedImage := strings.TrimPrefix(denied.URL, "http://") + "/ns/app:1"
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedHost := closed.Addr().String()
	closed.Close()

	cred := credentials.Candidate{ID: "secret:ns/s/1", Description: `secret ns/s, user "bob"`, AuthConfig: authConfig("bob", "hunter2")}
	tests := []struct {
		name, image string
		creds       []credentials.Candidate
		reason      string
		says        []string
	}{
		{"invalid reference", "Not//Valid", nil, ReasonInvalidImageName, []string{`"Not//Valid"`}},
		{"no credential", deniedImage, nil, ReasonNoCredentialMatched, []string{"no credential matched registry " + strings.TrimPrefix(denied.URL, "http://"), "pullgate secrets link"}},
		{"unauthorized", deniedImage, []credentials.Candidate{cred}, ReasonUnauthorized, []string{`secret ns/s, user "bob"`, "UNAUTHORIZED"}},
		{"manifest unknown", strings.Replace(image, ":1", ":missing", 1), nil, ReasonManifestUnknown, []string{"not found", "MANIFEST_UNKNOWN"}},
		{"unreachable", closedHost + "/ns/app", nil, ReasonRegistryUnreachable, []string{"registry " + closedHost + " is unreachable"}},
	}
	p := newPuller(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A reference the node could not read reaches the puller as written alone.
			img, _ := credentials.ParseImage(tt.image)
			img.Given = tt.image
			_, err := p.Pull(context.Background(), Request{Image: img, Credentials: tt.creds})
			var perr *Error
			if !errors.As(err, &perr) || perr.Reason != tt.reason {
				t.Fatalf("got %v, want reason %s", err, tt.reason)
			}
			for _, s := range tt.says {
				if !strings.Contains(perr.Message, s) {
					t.Errorf("message %q does not say %q", perr.Message, s)
				}
			}
			if strings.Contains(perr.Message, "hunter2") {
				t.Errorf("message shows the password: %q", perr.Message)
			}
		})
	}
}

// A blob changed on disk after it was pulled is never used: a size that is wrong is
// seen at once, content that is wrong before the first use after a restart, at the
// first use after any write to its file, and by any pull; the blob is removed,
// counted, and fetched again.
func TestCorruptStoredBlobsAreFoundAndFetchedAgain(t *testing.T) {
	image, img := serve(t, func(h http.Handler) http.Handler { return h })
	p := newPuller(t)
	if _, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)}); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	blob := filepath.Join(p.Store.Dir(), "blobs", "sha256", d.Hex)
	data, _ := os.ReadFile(blob)

	// Same size, other content: a pull (imagePullPolicy Always) hashes and re-fetches.
	garbage := make([]byte, len(data))
	if err := os.WriteFile(blob, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	if err != nil || res.Transferred != int64(len(data)) {
		t.Fatalf("pull over a corrupt blob: transferred %v bytes (err %v), want the blob again (%d)", res, err, len(data))
	}
	if c := p.Store.TakeCorruptions(); len(c) != 1 || c[0].Blob != d {
		t.Errorf("corruptions %+v", c)
	}

	// Same size, other content, found before first use after a restart.
	_ = os.WriteFile(blob, garbage, 0o644)
	restarted, err := OpenStore(p.Store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := restarted.Lookup(image); ok {
		t.Error("a restarted node uses a blob whose content is wrong")
	}
	// Same size, other content, written in place after it was hashed: the write moved
	// the file's change time, so its next use hashes it again — no Reverify needed.
	p2 := &Puller{Store: restarted}
	if _, err := p2.Pull(context.Background(), Request{Image: mustImage(t, image)}); err != nil {
		t.Fatal(err)
	}
	overwriteInPlace(t, blob, garbage)
	if _, ok := restarted.Lookup(image); ok {
		t.Error("a blob overwritten in place with the same size is used")
	}
	// What no write through the kernel shows (the disk itself rotting) is found by the
	// next Reverify (the node agent's schedule): here, the stamp of the rotten file
	// recorded as if it had been hashed.
	if _, err := p2.Pull(context.Background(), Request{Image: mustImage(t, image)}); err != nil {
		t.Fatal(err)
	}
	overwriteInPlace(t, blob, garbage)
	info, _ := os.Stat(blob)
	restarted.remember(d, stampOf(info))
	if _, ok := restarted.Lookup(image); !ok {
		t.Fatal("a blob whose file did not change since it was hashed is hashed again at every use")
	}
	restarted.Reverify()
	if _, ok := restarted.Lookup(image); ok {
		t.Error("a blob whose content is wrong is used after Reverify")
	}
	// Truncated: seen at once, even where the blob was hashed before.
	if _, err := p2.Pull(context.Background(), Request{Image: mustImage(t, image)}); err != nil {
		t.Fatal(err)
	}
	_ = os.Truncate(blob, 10)
	if _, ok := restarted.Lookup(image); ok {
		t.Error("a truncated blob is used")
	}
	if n := len(restarted.TakeCorruptions()); n != 4 {
		t.Errorf("%d corruptions counted, want 4", n)
	}
}

// overwriteInPlace writes data over the file at name without replacing it (same inode,
// as a stray write or a bad tool would), and sets its modification time back to what
// it was, so only the change time tells.
func overwriteInPlace(t *testing.T, name string, data []byte) {
	t.Helper()
	info, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// mustImage reads image as a node would, where it enters.
func mustImage(t testing.TB, image string) credentials.Image {
	t.Helper()
	img, err := credentials.ParseImage(image)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
