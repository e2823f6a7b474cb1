package registry

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// pinnedWrites is the fence's side in front of distribution (see fence):
//
//   - a manifest PUT is pinned from before distribution checks what it names until
//     its tag and referrers index are written (distribution stores the manifest and
//     tags it in two steps, and pullgate records the tag in the ImageStream between);
//   - a blob HEAD that finds the blob — after which a client skips its upload and names
//     it in a manifest — keeps it from a prune running now (a done pin) and refreshes
//     the repository's link to it, so a later prune counts its age from now.
//
// Only a caller whose token allows the push (or, for HEAD, the pull) is pinned:
// nobody else makes the registry write anything.
type pinnedWrites struct {
	next     http.Handler
	fence    fence
	verifier auth.AccessController
	log      *slog.Logger
}

// touchAfter is how old a repository's link to a blob must be for a HEAD to refresh
// it: at most one write per blob and repository a minute.
const touchAfter = time.Minute

func (h *pinnedWrites) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, kind, ref := splitRoute(r.URL.Path)
	switch {
	case kind == "manifests" && r.Method == http.MethodPut && granted(r, h.verifier, name, "push"):
		h.putManifest(w, r, name)
	case kind == "blobs" && r.Method == http.MethodHead:
		rec := &statusRecorder{ResponseWriter: w}
		h.next.ServeHTTP(rec, r)
		if d, err := digest.Parse(ref); err == nil && rec.status == http.StatusOK {
			h.touch(r, name, d)
		}
	default:
		h.next.ServeHTTP(w, r)
	}
}

func (h *pinnedWrites) putManifest(w http.ResponseWriter, r *http.Request, name string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ctx, p, err := h.fence.pin(r.Context(), manifestPin(name, body))
	if err != nil {
		h.log.Error("a manifest push could not be pinned against prunes", "repository", name, "err", err)
		_ = errcode.ServeJSON(w, errcode.ErrorCodeUnavailable.WithMessage("registry storage is unavailable; try again"))
		return
	}
	h.next.ServeHTTP(w, r.WithContext(ctx))
	if err := p.release(r.Context()); err != nil {
		h.log.Warn("a manifest push's pin could not be released; what it names is kept from prunes for an hour", "repository", name, "err", err)
	}
}

// manifestDigests are the manifest's own digest and every digest it names: config,
// layers, and an index's manifests. A body that is not a manifest names nothing more.
func manifestDigests(body []byte) []digest.Digest {
	out := []digest.Digest{digest.FromBytes(body)}
	var m struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(body, &m) != nil {
		return out
	}
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range append(m.Layers, m.Manifests...) {
		out = append(out, l.Digest)
	}
	return out
}

// indexManifests are the manifests an index names.
func indexManifests(body []byte) []digest.Digest {
	var m struct {
		Manifests []v1.Descriptor `json:"manifests"`
	}
	_ = json.Unmarshal(body, &m)
	var out []digest.Digest
	for _, c := range m.Manifests {
		out = append(out, c.Digest)
	}
	return out
}

// touch keeps blob d, just found in repo by a HEAD, from the prune running now and
// refreshes repo's link to it.
func (h *pinnedWrites) touch(r *http.Request, repo string, d digest.Digest) {
	ctx := r.Context()
	if running, err := h.fence.running(ctx); err == nil && running {
		if _, p, err := h.fence.pin(ctx, blobPin(repo, d)); err == nil {
			_ = p.release(ctx)
		}
	}
	link := layerLinkPath(repo, d)
	if fi, err := h.fence.driver.Stat(ctx, link); err == nil && time.Since(fi.ModTime()) > touchAfter {
		if err := h.fence.driver.PutContent(ctx, link, []byte(d.String())); err != nil {
			h.log.Warn("a blob's link could not be refreshed", "repository", repo, "blob", d, "err", err)
		}
	}
}
