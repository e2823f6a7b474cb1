package registry

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/docker/go-units"
	"golang.org/x/sys/unix"
)

// ErrorCodeStorageFull refuses a write that would leave the registry's disk with
// less than its reserve: the space kept for everything else on it (in pullgate up,
// etcd).
var ErrorCodeStorageFull = errcode.Register("pullgate", errcode.ErrorDescriptor{
	Value:          "STORAGE_FULL",
	Message:        "registry storage is full",
	Description:    "The registry keeps a reserve of free space and refuses writes that would use it.",
	HTTPStatusCode: http.StatusInsufficientStorage,
})

// DefaultStorageReserve is the free space the registry keeps on a filesystem store.
const DefaultStorageReserve = 1 << 30

// diskSpace refuses pushes into a filesystem store that would leave less than reserve
// free, before any byte is written.
type diskSpace struct {
	next    http.Handler
	root    string
	reserve int64
	free    func(root string) (int64, error) // statfs; nil: free
}

func (d diskSpace) left() (int64, error) {
	if d.free != nil {
		return d.free(d.root)
	}
	return free(d.root)
}

// free is the space left for an unprivileged writer on root's filesystem.
func free(root string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func (d diskSpace) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only for a caller with a token: anyone else is refused anyway, and learns
	// nothing of the disk.
	if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch || r.Header.Get("Authorization") == "" {
		d.next.ServeHTTP(w, r)
		return
	}
	left, err := d.left()
	if err == nil && left-max(r.ContentLength, 0) < d.reserve {
		// A client still sending its body would not read the answer: take what it
		// sends (up to a bound) and drop it, then answer.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDiscard))
		d.refuse(w, left)
		return
	}
	// A body of unknown length, or many at once, is watched as it is written.
	body := &reserveReader{ReadCloser: r.Body, space: d}
	r.Body = body
	d.next.ServeHTTP(&fullWriter{ResponseWriter: w, body: body}, r)
}

func (d diskSpace) refuse(w http.ResponseWriter, left int64) {
	_ = errcode.ServeJSON(w, ErrorCodeStorageFull.WithMessage(fmt.Sprintf(
		"registry storage is full: %s free, reserve %s; nothing was written (free space, or reclaim it: pullgate adm prune --confirm)",
		units.BytesSize(float64(max(left, 0))), units.BytesSize(float64(d.reserve)))))
}

// maxDiscard is how much of a refused body is read (and dropped) so the client sees
// the answer; past it the connection is closed.
const maxDiscard = 256 << 20

// checkEvery is how much of a request body is written between two looks at the disk.
const checkEvery = 8 << 20

// reserveReader ends a request body once the disk is down to the reserve.
type reserveReader struct {
	io.ReadCloser
	space     diskSpace
	unchecked int64
	full      bool
	left      int64
}

func (b *reserveReader) Read(p []byte) (int, error) {
	if b.full {
		return 0, syscall.ENOSPC
	}
	n, err := b.ReadCloser.Read(p)
	b.unchecked += int64(n)
	if b.unchecked >= checkEvery {
		b.unchecked = 0
		if left, ferr := b.space.left(); ferr == nil && left < b.space.reserve {
			b.full, b.left = true, left
			return n, syscall.ENOSPC
		}
	}
	return n, err
}

// fullWriter answers STORAGE_FULL in place of the error distribution gives for a
// body its reserveReader ended.
type fullWriter struct {
	http.ResponseWriter
	body     *reserveReader
	replaced bool
}

func (f *fullWriter) WriteHeader(code int) {
	if code >= 400 && f.body.full && !f.replaced {
		f.replaced = true
		f.ResponseWriter.Header().Del("Content-Length")
		f.body.space.refuse(f.ResponseWriter, f.body.left)
		return
	}
	if !f.replaced {
		f.ResponseWriter.WriteHeader(code)
	}
}

func (f *fullWriter) Write(b []byte) (int, error) {
	if f.replaced {
		return len(b), nil
	}
	return f.ResponseWriter.Write(b)
}

func (f *fullWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// storageErrors keeps the server's internals out of its answers: a 5xx error body
// (which distribution fills with the storage driver's error, absolute paths and
// all) is logged and replaced by a plain message; a full disk met after all is
// answered as STORAGE_FULL.
type storageErrors struct {
	next http.Handler
	log  *slog.Logger
}

func (h storageErrors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := &errorBody{ResponseWriter: w, r: r, log: h.log}
	h.next.ServeHTTP(e, r)
	e.finish()
}

type errorBody struct {
	http.ResponseWriter
	r        *http.Request
	log      *slog.Logger
	status   int
	captured *bytes.Buffer
}

func (e *errorBody) WriteHeader(code int) {
	if e.status != 0 {
		return
	}
	e.status = code
	if code >= 500 && code != http.StatusInsufficientStorage && strings.Contains(e.Header().Get("Content-Type"), "json") {
		e.captured = &bytes.Buffer{}
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorBody) Write(b []byte) (int, error) {
	if e.status == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if e.captured != nil {
		return e.captured.Write(b)
	}
	return e.ResponseWriter.Write(b)
}

// finish writes the plain answer for a captured error.
func (e *errorBody) finish() {
	if e.captured == nil {
		return
	}
	e.log.Error("registry request failed", "method", e.r.Method, "path", e.r.URL.Path, "status", e.status, "error", e.captured.String())
	e.Header().Del("Content-Length")
	code := errcode.ErrorCodeUnknown.WithMessage("the registry's storage failed; try again (the registry's log has the details)")
	if strings.Contains(e.captured.String(), "no space left on device") {
		code = ErrorCodeStorageFull.WithMessage("registry storage is full: a write failed for want of space; nothing was stored (free space, or reclaim it: pullgate adm prune --confirm)")
	}
	_ = errcode.ServeJSON(e.ResponseWriter, code)
}

func (e *errorBody) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// ReadFrom keeps the kernel copy (sendfile) of the answers it does not capture.
func (e *errorBody) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := e.ResponseWriter.(io.ReaderFrom); ok && e.captured == nil && e.status != 0 {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{e}, src)
}
