package registry

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/google/uuid"
)

// uploadHandler stores request bodies as distribution does: a body that fails to
// read is a 500 UNKNOWN with the reader's error in its detail.
func uploadHandler(stored *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(countingWriter{stored}, r.Body)
		if err != nil {
			_ = errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail("/var/lib/secret/path: "+err.Error()))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

func TestFullDiskRefusesWritesWithTheReserve(t *testing.T) {
	var stored atomic.Int64
	disk := int64(100 << 20)
	space := diskSpace{next: uploadHandler(&stored), root: "/r", reserve: 64 << 20, pending: &pendingBytes{},
		free: func(string) (int64, error) { return disk - stored.Load(), nil }}
	h := storageErrors{next: space, log: slog.New(slog.DiscardHandler)}

	// A body the disk cannot take beside the reserve is refused before a byte is read.
	big := httptest.NewRequest(http.MethodPut, "/v2/a/b/blobs/uploads/x", bytes.NewReader(make([]byte, 40<<20)))
	big.Header.Set("Authorization", "Bearer t")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, big)
	if rec.Code != http.StatusInsufficientStorage || !strings.Contains(rec.Body.String(), "registry storage is full: 100MiB free, reserve 64MiB") || stored.Load() != 0 {
		t.Errorf("40 MiB into 100 MiB free, reserve 64 MiB: %d %s (stored %d)", rec.Code, rec.Body, stored.Load())
	}

	// A streamed body (no length) is ended once the disk reaches the reserve.
	streamed := httptest.NewRequest(http.MethodPatch, "/v2/a/b/blobs/uploads/x", io.NopCloser(bytes.NewReader(make([]byte, 60<<20))))
	streamed.ContentLength = -1
	streamed.Header.Set("Authorization", "Bearer t")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, streamed)
	if rec.Code != http.StatusInsufficientStorage || !strings.Contains(rec.Body.String(), "STORAGE_FULL") || strings.Contains(rec.Body.String(), "/var/lib") {
		t.Errorf("streamed 60 MiB: %d %s", rec.Code, rec.Body)
	}
	if got := stored.Load(); got > 36<<20+checkEvery {
		t.Errorf("%d bytes were stored; the reserve allows 36 MiB and one check interval", got)
	}

	// A streamed body that exactly fits beside the reserve is taken whole: nothing more
	// is claimed once it has ended.
	stored.Store(0)
	disk = 64<<20 + checkEvery
	edge := httptest.NewRequest(http.MethodPatch, "/v2/a/b/blobs/uploads/x", io.NopCloser(bytes.NewReader(make([]byte, checkEvery))))
	edge.ContentLength = -1
	edge.Header.Set("Authorization", "Bearer t")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, edge)
	if rec.Code != http.StatusAccepted {
		t.Errorf("a streamed body of exactly the space above the reserve: %d %s", rec.Code, rec.Body)
	}

	// Reads, and callers without a token, are not looked at.
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/v2/a/b/blobs/sha256:x", nil),
		httptest.NewRequest(http.MethodPut, "/v2/a/b/blobs/uploads/x", strings.NewReader("x")),
	} {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code == http.StatusInsufficientStorage {
			t.Errorf("%s without a token was told about the disk", r.Method)
		}
	}
}

// Uploads at once cannot overshoot the reserve together: 40 streamed uploads (no
// length) into 200 MiB with a 64 MiB reserve never take the disk below the reserve,
// those refused answer 507, and each refused upload is deleted: nothing of it is kept.
func TestConcurrentUploadsCannotOvershootTheReserve(t *testing.T) {
	root := t.TempDir()
	const disk, reserve = int64(200 << 20), int64(64 << 20)
	var stored, peak atomic.Int64
	store := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if now := stored.Add(int64(n)); now > peak.Load() {
				peak.Store(now)
			}
			if err == io.EOF {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			if err != nil {
				_ = errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail(err.Error()))
				return
			}
		}
	})
	space := diskSpace{next: store, root: root, reserve: reserve, pending: &pendingBytes{},
		free: func(string) (int64, error) { return disk - stored.Load(), nil }}
	h := storageErrors{next: space, log: slog.New(slog.DiscardHandler)}
	var wg sync.WaitGroup
	var refused, accepted atomic.Int32
	for i := range 40 {
		id := uuid.NewString()
		dir := filepath.Join(root, "docker/registry/v2/repositories/a/b/_uploads", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			r := httptest.NewRequest(http.MethodPatch, "/v2/a/b/blobs/uploads/"+id, io.NopCloser(bytes.NewReader(make([]byte, 16<<20))))
			r.ContentLength = -1
			r.Header.Set("Authorization", "Bearer t")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			switch rec.Code {
			case http.StatusAccepted:
				accepted.Add(1)
			case http.StatusInsufficientStorage:
				refused.Add(1)
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("upload %d was refused and its upload is still stored (%v)", i, err)
				}
			default:
				t.Errorf("upload %d: %d %s", i, rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	t.Logf("%d uploads of 16 MiB accepted, %d refused; at most %d MiB stored at once", accepted.Load(), refused.Load(), peak.Load()>>20)
	if peak.Load() > disk-reserve {
		t.Errorf("uploads took the disk to %d MiB free, below the %d MiB reserve", (disk-peak.Load())>>20, reserve>>20)
	}
	if accepted.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d accepted, %d refused: want some of each for 640 MiB into 136 MiB", accepted.Load(), refused.Load())
	}
	if n := space.pending.n; n != 0 {
		t.Errorf("%d bytes still claimed after every upload ended", n)
	}
}

// A storage failure answers without the server's paths.
func TestStorageErrorsHideServerPaths(t *testing.T) {
	h := storageErrors{log: slog.New(slog.DiscardHandler), next: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithDetail("open /var/lib/pullgate/registry/storage/x: permission denied"))
	})}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/a/b/manifests/v1", nil))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "/var/lib") || !strings.Contains(rec.Body.String(), "registry's log has the details") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

type countingWriter struct{ n *atomic.Int64 }

func (c countingWriter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return len(b), nil
}
