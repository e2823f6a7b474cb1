package registry

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/registry/api/errcode"
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
	space := diskSpace{next: uploadHandler(&stored), root: "/r", reserve: 64 << 20,
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
