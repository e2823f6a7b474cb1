package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path"
	"sort"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifestSize is the largest manifest read to find its subject (distribution's limit).
const maxManifestSize = 4 << 20

// referrers is pullgate's OCI 1.1 Referrers API, which distribution 3.1.2 lacks. A
// manifest PUT that names a subject is answered with the OCI-Subject header and
// indexed in the storage driver under /pullgate/referrers/<repository>/<subject>/;
// GET /v2/<name>/referrers/<digest> lists that index as an image index, filtered by
// artifactType when asked. Deleting the manifest removes it from the index.
type referrers struct {
	next     http.Handler
	driver   storagedriver.StorageDriver
	verifier auth.AccessController
	log      *slog.Logger
	// record, when set, lists a referrer on its repository's ImageStream, where the
	// repository's readers see it.
	record func(ctx context.Context, repo string, subject digest.Digest, desc v1.Descriptor)
}

const referrersRoot = "/pullgate/referrers"

func (h *referrers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, kind, ref := splitRoute(r.URL.Path)
	switch {
	case kind == "referrers" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		h.list(w, r, name, ref)
	case kind == "manifests" && r.Method == http.MethodPut:
		h.put(w, r, name)
	case kind == "manifests" && r.Method == http.MethodDelete:
		rec := &statusRecorder{ResponseWriter: w}
		h.next.ServeHTTP(rec, r)
		if rec.status == http.StatusAccepted {
			if dgst, err := digest.Parse(ref); err == nil {
				h.forget(r.Context(), name, dgst)
			}
		}
	default:
		h.next.ServeHTTP(w, r)
	}
}

// put passes the manifest to distribution and, once stored, indexes its subject.
// Nothing of the body is read for a caller that may not push there: distribution
// refuses it at once.
func (h *referrers) put(w http.ResponseWriter, r *http.Request, name string) {
	if !granted(r, h.verifier, name, "push") {
		h.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m manifestFields
	if json.Unmarshal(body, &m) != nil || m.Subject == nil {
		h.next.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, onHeader: func(status int, hdr http.Header) {
		if status == http.StatusCreated {
			hdr.Set("OCI-Subject", m.Subject.Digest.String())
		}
	}}
	h.next.ServeHTTP(rec, r)
	if rec.status != http.StatusCreated {
		return
	}
	dgst, err := digest.Parse(rec.Header().Get("Docker-Content-Digest"))
	if err != nil {
		dgst = digest.FromBytes(body)
	}
	desc := v1.Descriptor{
		MediaType:    m.MediaType,
		Digest:       dgst,
		Size:         int64(len(body)),
		ArtifactType: m.artifactType(),
		Annotations:  m.Annotations,
	}
	if desc.MediaType == "" {
		desc.MediaType = r.Header.Get("Content-Type")
	}
	data, _ := json.Marshal(desc)
	ctx := r.Context()
	// The manifest is stored and acknowledged; an index that could not be written is
	// logged (the next push of the manifest writes it again).
	for path, content := range map[string][]byte{
		h.linkPath(name, m.Subject.Digest, dgst): data,
		h.reversePath(name, dgst):                []byte(m.Subject.Digest.String()),
	} {
		if err := h.driver.PutContent(ctx, path, content); err != nil {
			h.log.Error("referrers index not written", "repository", name, "manifest", dgst, "subject", m.Subject.Digest, "err", err)
		}
	}
	if h.record != nil {
		h.record(ctx, name, m.Subject.Digest, desc)
	}
}

func (h *referrers) forget(ctx context.Context, name string, dgst digest.Digest) {
	subject, err := h.driver.GetContent(ctx, h.reversePath(name, dgst))
	if err != nil {
		return
	}
	var paths []string
	if s, err := digest.Parse(string(subject)); err == nil {
		paths = append(paths, h.linkPath(name, s, dgst))
	}
	for _, p := range append(paths, h.reversePath(name, dgst)) {
		if err := h.driver.Delete(ctx, p); err != nil && !isPathNotFound(err) {
			h.log.Error("referrers index entry not removed", "repository", name, "manifest", dgst, "err", err)
		}
	}
}

func (h *referrers) list(w http.ResponseWriter, r *http.Request, name, ref string) {
	if !authorize(w, r, h.verifier, pullAccess(name)) {
		return
	}
	subject, err := digest.Parse(ref)
	if err != nil {
		_ = errcode.ServeJSON(w, errcode.ErrorCodeDigestInvalid.WithDetail(ref))
		return
	}
	artifactType := r.URL.Query().Get("artifactType")
	dir := h.subjectDir(name, subject)
	entries, err := h.driver.List(r.Context(), dir)
	if err != nil && !isPathNotFound(err) {
		_ = errcode.ServeJSON(w, errcode.ErrorCodeUnavailable.WithMessage("registry storage is unavailable; try again"))
		return
	}
	sort.Strings(entries)
	var manifests []v1.Descriptor
	for _, entry := range entries {
		data, err := h.driver.GetContent(r.Context(), entry)
		if err != nil {
			continue
		}
		var desc v1.Descriptor
		if json.Unmarshal(data, &desc) != nil {
			continue
		}
		if artifactType != "" && desc.ArtifactType != artifactType {
			continue
		}
		manifests = append(manifests, desc)
	}
	serveIndex(w, r, artifactType, manifests)
}

// serveIndex answers a Referrers request with an image index of manifests.
func serveIndex(w http.ResponseWriter, r *http.Request, artifactType string, manifests []v1.Descriptor) {
	index := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: manifests}
	if index.Manifests == nil {
		index.Manifests = []v1.Descriptor{}
	}
	index.SchemaVersion = 2
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	data, _ := json.Marshal(index)
	w.Header().Set("Content-Type", v1.MediaTypeImageIndex)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data)
	}
}

func (h *referrers) subjectDir(name string, subject digest.Digest) string {
	return path.Join(referrersRoot, name, "subjects", subject.Algorithm().String(), subject.Encoded())
}

func (h *referrers) linkPath(name string, subject, referrer digest.Digest) string {
	return path.Join(h.subjectDir(name, subject), referrer.Algorithm().String()+"-"+referrer.Encoded())
}

func (h *referrers) reversePath(name string, referrer digest.Digest) string {
	return path.Join(referrersRoot, name, "referrers", referrer.Algorithm().String(), referrer.Encoded())
}

// manifestFields are the parts of an image manifest or index that the Referrers
// API reports.
type manifestFields struct {
	Layers       []v1.Descriptor   `json:"layers"`
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *v1.Descriptor    `json:"config"`
	Subject      *v1.Descriptor    `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// artifactType is the manifest's artifactType, else its config's media type (image manifests).
func (m manifestFields) artifactType() string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	if m.Config != nil && m.MediaType != v1.MediaTypeImageIndex {
		return m.Config.MediaType
	}
	return ""
}

// statusRecorder remembers the status written, and lets a caller add headers just
// before it is.
type statusRecorder struct {
	http.ResponseWriter
	status   int
	onHeader func(int, http.Header)
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		if s.onHeader != nil {
			s.onHeader(code, s.ResponseWriter.Header())
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}
