package registry

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/google/uuid"
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
// free, counting the bytes that requests in flight are still to write (so many
// uploads at once cannot overshoot it together), and deletes an upload it refused:
// an upload the registry refused can never be resumed, so nothing of it is kept.
type diskSpace struct {
	next    http.Handler
	root    string
	reserve int64
	free    func(root string) (int64, error) // statfs; nil: free
	pending *pendingBytes
}

// pendingBytes are the bytes requests in flight have been allowed to write and have
// not yet received.
type pendingBytes struct {
	mu sync.Mutex
	n  int64
}

// claim allows n more bytes if the disk keeps the reserve with them and every other
// claim; it returns the free space it judged by.
func (d diskSpace) claim(n int64) (left int64, ok bool) {
	d.pending.mu.Lock()
	defer d.pending.mu.Unlock()
	left, err := d.left()
	if err != nil {
		return 0, true // the disk cannot be read: the write's own error will tell
	}
	if left-d.pending.n-n < d.reserve {
		return left - d.pending.n, false
	}
	d.pending.n += n
	return left, true
}

func (d diskSpace) unclaim(n int64) {
	d.pending.mu.Lock()
	d.pending.n -= n
	d.pending.mu.Unlock()
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
	body := &reserveReader{ReadCloser: r.Body, space: d}
	defer body.release()
	if r.ContentLength > 0 {
		body.known = true
		if left, ok := d.claim(r.ContentLength); ok {
			body.claimed = r.ContentLength
		} else {
			// A client still sending its body would not read the answer: take what it
			// sends (up to a bound) and drop it. Nothing of it is written.
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDiscard))
			if r.Method == http.MethodPost {
				d.refuse(w, left)
				return
			}
			// The request goes on, its body refused at the first read, so that
			// distribution answers for whose upload it is before it is deleted.
			body.full, body.left = true, left
		}
	}
	r.Body = body
	fw := &fullWriter{ResponseWriter: w, body: body}
	d.next.ServeHTTP(fw, r)
	if fw.status >= http.StatusInternalServerError {
		d.dropUpload(r)
	}
}

// dropUpload deletes the upload a write request failed on (refused here, or failed
// for want of space or otherwise): it cannot be resumed, and what it wrote would stay
// until a prune found it.
func (d diskSpace) dropUpload(r *http.Request) {
	name, kind, ref := splitRoute(r.URL.Path)
	id, isUpload := strings.CutPrefix(ref, "uploads/")
	if kind != "blobs" || !isUpload || r.Method == http.MethodPost {
		return
	}
	if _, err := reference.WithName(name); err != nil {
		return
	}
	if _, err := uuid.Parse(id); err != nil {
		return
	}
	_ = os.RemoveAll(filepath.Join(d.root, filepath.FromSlash(repositoryDir(name)), "_uploads", id))
}

func (d diskSpace) refuse(w http.ResponseWriter, left int64) {
	_ = errcode.ServeJSON(w, ErrorCodeStorageFull.WithMessage(fmt.Sprintf(
		"registry storage is full: %s free, reserve %s; the write was refused and nothing of its upload is kept (free space, or reclaim it: pullgate adm prune --confirm)",
		units.BytesSize(float64(max(left, 0))), units.BytesSize(float64(d.reserve)))))
}

// maxDiscard is how much of a refused body is read (and dropped) so the client sees
// the answer; past it the connection is closed.
const maxDiscard = 256 << 20

// checkEvery is how much of a body of unknown length is claimed at a time, and how
// much of any body is written between two looks at the disk.
const checkEvery = 8 << 20

// reserveReader ends a request body once the disk is down to the reserve: a body of
// known length was claimed whole before it was read, one of unknown length is claimed
// checkEvery at a time; every checkEvery the disk is looked at again, for what other
// writers (etcd) took meanwhile.
type reserveReader struct {
	io.ReadCloser
	space     diskSpace
	known     bool
	claimed   int64 // allowed and not yet received
	unchecked int64
	full      bool
	left      int64
}

func (b *reserveReader) Read(p []byte) (int, error) {
	if b.full {
		return 0, syscall.ENOSPC
	}
	n, err := b.ReadCloser.Read(p)
	if !b.known && int64(n) > b.claimed {
		// Claimed once the bytes are here (and before they are written), so a body that
		// ends on a window's edge claims nothing more.
		window := max(checkEvery, int64(n))
		left, ok := b.space.claim(window)
		if !ok {
			b.full, b.left = true, left
			return 0, syscall.ENOSPC
		}
		b.claimed += window
	}
	used := min(int64(n), b.claimed)
	b.claimed -= used
	b.space.unclaim(used)
	b.unchecked += int64(n)
	if b.unchecked >= checkEvery {
		b.unchecked = 0
		b.space.pending.mu.Lock()
		left, ferr := b.space.left()
		pending := b.space.pending.n
		b.space.pending.mu.Unlock()
		if ferr == nil && left-pending < b.space.reserve {
			b.full, b.left = true, left-pending
			return n, syscall.ENOSPC
		}
	}
	return n, err
}

// release gives back what the request was allowed and did not write.
func (b *reserveReader) release() {
	b.space.unclaim(b.claimed)
	b.claimed = 0
}

// fullWriter answers STORAGE_FULL in place of the error distribution gives for a
// body its reserveReader ended, and remembers the status it answered.
type fullWriter struct {
	http.ResponseWriter
	body     *reserveReader
	replaced bool
	status   int
}

func (f *fullWriter) WriteHeader(code int) {
	if f.status == 0 {
		f.status = code
	}
	if code >= 400 && f.body.full && !f.replaced {
		f.replaced = true
		f.status = http.StatusInsufficientStorage
		// A client still sending its body would not read the answer (it would see its
		// connection reset): what it sends is taken, up to a bound, and dropped.
		_, _ = io.Copy(io.Discard, io.LimitReader(f.body.ReadCloser, maxDiscard))
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
	if f.status == 0 {
		f.status = http.StatusOK
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
		code = ErrorCodeStorageFull.WithMessage("registry storage is full: a write failed for want of space; nothing of it is kept (free space, or reclaim it: pullgate adm prune --confirm)")
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
