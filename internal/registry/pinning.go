package registry

import (
	"bytes"
	"context"
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
//   - a blob HEAD — after which a client that finds the blob skips its upload and names
//     it in a manifest — is pinned while a prune runs, from before the blob is looked
//     up, so a blob it finds is one that prune keeps; one that finds the blob refreshes
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
		if d, err := digest.Parse(ref); err == nil {
			h.headBlob(w, r, name, d)
			return
		}
		h.next.ServeHTTP(w, r)
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

// headBlob answers a HEAD of blob d in repo. While a prune runs, the HEAD is pinned
// first and looks the blob up second (the fence's order): either the prune reads the
// pin and keeps the blob, or it set the blob aside before the pin and the lookup puts
// it back (pruneGuard) — or, if the prune's delete won, answers 404 and the client
// uploads it. Pinning after the lookup, as this did before, left a window in which a
// client was told "present" of a blob the prune then deleted, and its manifest was
// refused. A HEAD that finds the blob refreshes repo's link to it. Left open: a prune
// that begins after this HEAD and finishes before the client's manifest arrives may
// still take a blob younger than the link's refresh and older than its
// --keep-younger-than (0s in the stress tests); the manifest is then refused and
// nothing acknowledged is lost.
func (h *pinnedWrites) headBlob(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) {
	ctx := r.Context()
	if running, err := h.fence.running(ctx); err == nil && running && granted(r, h.verifier, repo, "pull") {
		pinCtx, p, err := h.fence.pin(ctx, blobPin(repo, d))
		if err != nil {
			h.log.Error("a blob HEAD could not be pinned against the prune running", "repository", repo, "err", err)
			_ = errcode.ServeJSON(w, errcode.ErrorCodeUnavailable.WithMessage("registry storage is unavailable; try again"))
			return
		}
		defer func() {
			if err := p.release(ctx); err != nil {
				h.log.Warn("a blob HEAD's pin could not be released; the blob is kept from prunes for an hour", "repository", repo, "err", err)
			}
		}()
		r = r.WithContext(pinCtx)
	}
	rec := &statusRecorder{ResponseWriter: w}
	h.next.ServeHTTP(rec, r)
	if rec.status == http.StatusOK {
		h.refreshLink(ctx, repo, d)
	}
}

// refreshLink rewrites repo's link to blob d once it is touchAfter old, so a prune's
// --keep-younger-than counts from the last time a client found the blob.
func (h *pinnedWrites) refreshLink(ctx context.Context, repo string, d digest.Digest) {
	link := layerLinkPath(repo, d)
	if fi, err := h.fence.driver.Stat(ctx, link); err == nil && time.Since(fi.ModTime()) > touchAfter {
		if err := h.fence.driver.PutContent(ctx, link, []byte(d.String())); err != nil {
			h.log.Warn("a blob's link could not be refreshed", "repository", repo, "blob", d, "err", err)
		}
	}
}
