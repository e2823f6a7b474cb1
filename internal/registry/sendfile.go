package registry

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// sendfileBlobs serves blob GETs straight from the filesystem driver's files with
// http.ServeContent, so the kernel copies the bytes (sendfile) instead of distribution's
// user-space copy. Only a blob linked into the repository, for a caller whose token
// grants pull, is served here; everything else goes to distribution unchanged.
type sendfileBlobs struct {
	next     http.Handler
	root     string // the filesystem driver's rootdirectory
	verifier auth.AccessController
	served   prometheus.Counter
}

func (h *sendfileBlobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.TLS != nil {
		h.next.ServeHTTP(w, r)
		return
	}
	name, kind, ref := splitRoute(r.URL.Path)
	dgst, err := digest.Parse(ref)
	if kind != "blobs" || err != nil || dgst.Algorithm() != digest.SHA256 {
		h.next.ServeHTTP(w, r)
		return
	}
	v2 := filepath.Join(h.root, "docker", "registry", "v2")
	link := filepath.Join(v2, "repositories", filepath.FromSlash(name), "_layers", "sha256", dgst.Encoded(), "link")
	if linked, err := os.ReadFile(link); err != nil || string(linked) != dgst.String() {
		h.next.ServeHTTP(w, r)
		return
	}
	access := auth.Access{Resource: auth.Resource{Type: "repository", Name: name}, Action: "pull"}
	if _, err := h.verifier.Authorized(r, access); err != nil {
		h.next.ServeHTTP(w, r)
		return
	}
	f, err := os.Open(filepath.Join(v2, "blobs", "sha256", dgst.Encoded()[:2], dgst.Encoded(), "data"))
	if err != nil {
		h.next.ServeHTTP(w, r)
		return
	}
	defer f.Close()
	h.served.Inc()
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.Header().Set("Docker-Content-Digest", dgst.String())
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+dgst.String()+`"`)
	w.Header().Set("Cache-Control", "max-age=31536000")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// ReadFrom keeps the kernel copy when a wrapper sits between ServeContent and the
// connection.
func (d *deniedWriter) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := d.ResponseWriter.(io.ReaderFrom); ok && !d.replaced {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{d}, src)
}
