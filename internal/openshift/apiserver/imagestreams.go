package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

var imageStreamsResource = schema.GroupResource{Group: "image.openshift.io", Resource: "imagestreams"}

// toImageStream is a stored stream as image.openshift.io/v1 serves it: the spec
// users gave, the status the registry and imports recorded.
func (s *Server) toImageStream(is *imageapi.ImageStream) imagev1.ImageStream {
	out := imagev1.ImageStream{TypeMeta: metav1.TypeMeta{Kind: "ImageStream", APIVersion: "image.openshift.io/v1"}, ObjectMeta: *is.ObjectMeta.DeepCopy()}
	out.ManagedFields = nil
	out.Spec.Tags = is.Spec.Tags
	out.Spec.LookupPolicy = is.Spec.LookupPolicy
	repo := s.repository(is)
	out.Status.DockerImageRepository = repo
	out.Status.PublicDockerImageRepository = repo
	for _, t := range is.Status.Tags {
		tag := imagev1.NamedTagEventList{Tag: t.Tag, Items: []imagev1.TagEvent{}, Conditions: t.Conditions}
		for _, ev := range t.Items {
			tag.Items = append(tag.Items, imagev1.TagEvent{Created: ev.Created, DockerImageReference: ev.Reference(repo), Image: ev.Digest, Generation: ev.Generation})
		}
		out.Status.Tags = append(out.Status.Tags, tag)
	}
	return out
}

// repository is where the stream's images are pulled from: host/namespace/path.
func (s *Server) repository(is *imageapi.ImageStream) string {
	return is.PullRepository(s.RegistryHost)
}

// repositoryName is the stream's repository in the registry, <namespace>/<name>,
// or the nested path a push gave it.
func repositoryName(is *imageapi.ImageStream) string {
	return imageapi.RepositoryOf(is.Namespace, is.Name, is.Annotations)
}

func (s *Server) listImageStreams(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("watch") == "true" {
		s.watchImageStreams(w, r)
		return
	}
	stored, rv, err := s.storedStreams(r.Context(), r.PathValue("ns"))
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := imagev1.ImageStreamList{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamList", APIVersion: "image.openshift.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: []imagev1.ImageStream{}}
	for i := range stored {
		out.Items = append(out.Items, s.toImageStream(&stored[i]))
	}
	if wantsTable(r) {
		table := imageStreamTable(out.Items, time.Now())
		table.ResourceVersion = rv
		writeJSON(w, http.StatusOK, table)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getImageStream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	is, err := s.storedStream(r.Context(), r.PathValue("ns"), name, imageStreamsResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	s.writeImageStream(w, r, http.StatusOK, is)
}

func (s *Server) writeImageStream(w http.ResponseWriter, r *http.Request, code int, is *imageapi.ImageStream) {
	out := s.toImageStream(is)
	if wantsTable(r) {
		writeJSON(w, code, imageStreamTable([]imagev1.ImageStream{out}, time.Now()))
		return
	}
	writeJSON(w, code, out)
}

// createImageStream is oc create imagestream, oc apply of a new stream: the stream
// stored, then its spec tags followed (an import that fails is the tag's
// condition, as on OpenShift).
func (s *Server) createImageStream(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	var in imagev1.ImageStream
	if err := decodeBody(w, r, &in); err != nil {
		writeStatus(w, err)
		return
	}
	if in.Namespace != "" && in.Namespace != ns {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("imagestream %s: metadata.namespace %q does not match the request's namespace %q", in.Name, in.Namespace, ns)))
		return
	}
	if err := s.validateImageStream(r, ns, &in, nil); err != nil {
		writeStatus(w, err)
		return
	}
	stored, err := s.streams().Create(r.Context(), ns, in.ObjectMeta, imageapi.ImageStreamSpec{Tags: in.Spec.Tags, LookupPolicy: in.Spec.LookupPolicy})
	if err != nil {
		writeStatus(w, err)
		return
	}
	stored = s.followSpecTags(r.Context(), stored, changedTags(nil, stored.Spec.Tags))
	s.writeImageStream(w, r, http.StatusCreated, stored)
}

// updateImageStream is a PUT of the whole stream: its labels, annotations and spec
// (its status is the registry's and the imports').
func (s *Server) updateImageStream(w http.ResponseWriter, r *http.Request) {
	var in imagev1.ImageStream
	if err := decodeBody(w, r, &in); err != nil {
		writeStatus(w, err)
		return
	}
	s.replaceImageStream(w, r, &in)
}

func (s *Server) replaceImageStream(w http.ResponseWriter, r *http.Request, in *imagev1.ImageStream) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if in.Name != name {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("imagestream %s: metadata.name %q does not match the request's name", name, in.Name)))
		return
	}
	old, err := s.storedStream(r.Context(), ns, name, imageStreamsResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if err := s.validateImageStream(r, ns, in, old.Spec.Tags); err != nil {
		writeStatus(w, err)
		return
	}
	stored, err := s.streams().UpdateSpec(r.Context(), old, in.ObjectMeta, imageapi.ImageStreamSpec{Tags: in.Spec.Tags, LookupPolicy: in.Spec.LookupPolicy})
	if err != nil {
		writeStatus(w, err)
		return
	}
	stored = s.followSpecTags(r.Context(), stored, changedTags(old.Spec.Tags, stored.Spec.Tags))
	s.writeImageStream(w, r, http.StatusOK, stored)
}

// patchImageStream applies a JSON, merge or strategic merge patch (oc apply, oc
// patch, oc set image-lookup) to the stream as image.openshift.io serves it.
func (s *Server) patchImageStream(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	old, err := s.storedStream(r.Context(), ns, name, imageStreamsResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	patch, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest("reading the patch: "+err.Error()))
		return
	}
	current, err := json.Marshal(s.toImageStream(old))
	if err != nil {
		writeStatus(w, err)
		return
	}
	var patched []byte
	switch types.PatchType(r.Header.Get("Content-Type")) {
	case types.JSONPatchType:
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(patch); err == nil {
			patched, err = p.Apply(current)
		}
	case types.MergePatchType:
		patched, err = jsonpatch.MergePatch(current, patch)
	case types.StrategicMergePatchType:
		patched, err = strategicpatch.StrategicMergePatch(current, patch, imagev1.ImageStream{})
	default:
		writeStatus(w, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", imageStreamsResource, name,
			fmt.Sprintf("patch type %q is not supported: use a JSON, merge or strategic merge patch (server-side apply is not served for image.openshift.io)", r.Header.Get("Content-Type")), 0, false))
		return
	}
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("imagestream %s: the patch does not apply: %v", name, err)))
		return
	}
	var in imagev1.ImageStream
	if err := json.Unmarshal(patched, &in); err != nil {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("imagestream %s: the patched object: %v", name, err)))
		return
	}
	s.replaceImageStream(w, r, &in)
}

// deleteImageStream deletes the stream; the registry forgets its repository, as
// for any stream deleted.
func (s *Server) deleteImageStream(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	err := s.Dynamic.Resource(imageapi.GVR).Namespace(ns).Delete(r.Context(), name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		err = apierrors.NewNotFound(imageStreamsResource, name)
	}
	if err != nil {
		writeStatus(w, err)
		return
	}
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Name: name, Group: imageStreamsResource.Group, Kind: "imagestreams"}})
}

// validateImageStream checks a stream as OpenShift does: its name, its spec tags'
// names and sources, and that the user may pull every stream its tags take images
// from (old are the tags already there, which were checked when written).
func (s *Server) validateImageStream(r *http.Request, ns string, in *imagev1.ImageStream, old []imagev1.TagReference) error {
	var causes []metav1.StatusCause
	for _, msg := range validation.IsDNS1123Subdomain(in.Name) {
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: "metadata.name", Message: msg})
	}
	seen := map[string]bool{}
	for i, t := range in.Spec.Tags {
		field := fmt.Sprintf("spec.tags[%d]", i)
		if err := validateTagName(t.Name); err != nil {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: field + ".name", Message: err.Error()})
		}
		if seen[t.Name] {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueDuplicate, Field: field + ".name", Message: "tag " + t.Name + " appears twice"})
		}
		seen[t.Name] = true
		if t.From == nil {
			continue
		}
		if msg := validateFrom(*t.From); msg != "" {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: field + ".from", Message: msg})
		}
	}
	if len(causes) > 0 {
		return invalid(imageStreamsResource, "ImageStream", in.Name, causes)
	}
	for i, t := range in.Spec.Tags {
		if prev, ok := specTag(old, t.Name); ok && sameFrom(prev.From, t.From) {
			continue
		}
		if err := s.mayPullFrom(r, ns, t.From); err != nil {
			return apierrors.NewForbidden(imageStreamsResource, in.Name, fmt.Errorf("spec.tags[%d].from: %w", i, err))
		}
	}
	return nil
}

func invalid(gr schema.GroupResource, kind, name string, causes []metav1.StatusCause) error {
	msg := fmt.Sprintf("%s %q is invalid:", kind, name)
	for _, c := range causes {
		msg += fmt.Sprintf(" %s: %s;", c.Field, c.Message)
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: msg[:len(msg)-1], Details: &metav1.StatusDetails{Group: gr.Group, Kind: kind, Name: name, Causes: causes}}}
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		return apierrors.NewBadRequest("reading the request's object: " + err.Error())
	}
	return nil
}

// storedStreams are pullgate's ImageStreams in ns (every namespace when ns is ""),
// and the list's resource version.
func (s *Server) storedStreams(ctx context.Context, ns string) ([]imageapi.ImageStream, string, error) {
	list, err := s.Dynamic.Resource(imageapi.GVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, "", err
	}
	out := make([]imageapi.ImageStream, 0, len(list.Items))
	for i := range list.Items {
		var is imageapi.ImageStream
		if runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &is) == nil {
			out = append(out, is)
		}
	}
	return out, list.GetResourceVersion(), nil
}

// storedStream is pullgate's ImageStream ns/name; a missing one is a NotFound of
// resource (what the client asked for) named asked.
func (s *Server) storedStream(ctx context.Context, ns, name string, resource schema.GroupResource, asked string) (*imageapi.ImageStream, error) {
	is, err := s.streams().Read(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(resource, asked)
	}
	return is, err
}
