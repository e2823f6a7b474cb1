package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	imagev1 "github.com/openshift/api/image/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

var imageStreamTagsResource = schema.GroupResource{Group: "image.openshift.io", Resource: "imagestreamtags"}

// imageStreamTags are the tags of stored that point at an image, each as
// image.openshift.io/v1 ImageStreamTag (its spec tag, if any, and the image it points
// at now); with metadata, each image described from its manifest and config.
func (s *Server) imageStreamTags(ctx context.Context, stored *imageapi.ImageStream, metadata bool) []imagev1.ImageStreamTag {
	is := s.toImageStream(stored)
	var out []imagev1.ImageStreamTag
	for _, t := range is.Status.Tags {
		if len(t.Items) == 0 {
			continue
		}
		now := t.Items[0]
		ist := imagev1.ImageStreamTag{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamTag", APIVersion: "image.openshift.io/v1"},
			ObjectMeta: metav1.ObjectMeta{Name: is.Name + ":" + t.Tag, Namespace: is.Namespace, UID: is.UID, CreationTimestamp: now.Created, ResourceVersion: is.ResourceVersion,
				Labels: is.Labels, Annotations: is.Annotations},
			Generation: now.Generation, LookupPolicy: is.Spec.LookupPolicy, Conditions: t.Conditions}
		if spec, ok := stored.Spec.SpecTag(t.Tag); ok {
			ist.Tag = &spec
		}
		ist.Image = imagev1.Image{ObjectMeta: metav1.ObjectMeta{Name: now.Image, CreationTimestamp: now.Created}, DockerImageReference: now.DockerImageReference}
		if metadata {
			if img, err := s.describe(ctx, is.Namespace, now.DockerImageReference); err == nil {
				img.DockerImageReference = now.DockerImageReference
				img.TypeMeta = metav1.TypeMeta{}
				ist.Image = img
			} else {
				s.Log.Warn("describing an image", "image", now.DockerImageReference, "err", err)
			}
		}
		if ist.Image.DockerImageManifestMediaType == "" {
			ist.Image.DockerImageManifestMediaType = mediaType(stored, t.Tag)
		}
		out = append(out, ist)
	}
	return out
}

func mediaType(stored *imageapi.ImageStream, tag string) string {
	for _, t := range stored.Status.Tags {
		if t.Tag == tag && len(t.Items) > 0 {
			return t.Items[0].MediaType
		}
	}
	return ""
}

// describe is the image at ref (<repository>@<digest>): the integrated registry's
// read as the image API, another registry's with the project's pull secrets.
func (s *Server) describe(ctx context.Context, ns, ref string) (imagev1.Image, error) {
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		return imagev1.Image{}, err
	}
	if d.Context().RegistryStr() == s.Images.Integrated {
		return s.Images.Describe(ctx, d, nil)
	}
	creds, err := images.ProjectCredentials(ctx, s.Client, ns, ref)
	if err != nil {
		return imagev1.Image{}, err
	}
	auth := authn.Anonymous
	if len(creds.List) > 0 {
		auth = authn.FromConfig(creds.List[0].AuthConfig)
	}
	return s.Images.Describe(ctx, d, auth)
}

func (s *Server) listImageStreamTags(w http.ResponseWriter, r *http.Request) {
	stored, rv, err := s.storedStreams(r.Context(), r.PathValue("ns"))
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := imagev1.ImageStreamTagList{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamTagList", APIVersion: "image.openshift.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: []imagev1.ImageStreamTag{}}
	for i := range stored {
		out.Items = append(out.Items, s.imageStreamTags(r.Context(), &stored[i], !wantsTable(r))...)
	}
	s.writeImageStreamTags(w, r, http.StatusOK, out, out.Items)
}

// splitTagName splits an ImageStreamTag's name, <stream>:<tag>.
func splitTagName(name string) (stream, tag string, err error) {
	stream, tag, ok := strings.Cut(name, ":")
	if !ok || stream == "" || tag == "" {
		return "", "", apierrors.NewBadRequest("imagestreamtag " + name + ": the name must be <stream>:<tag>")
	}
	return stream, tag, nil
}

func (s *Server) getImageStreamTag(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	stream, _, err := splitTagName(name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	is, err := s.storedStream(r.Context(), r.PathValue("ns"), stream, imageStreamTagsResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	s.writeImageStreamTag(w, r, http.StatusOK, is, name)
}

func (s *Server) writeImageStreamTag(w http.ResponseWriter, r *http.Request, code int, is *imageapi.ImageStream, name string) {
	for _, ist := range s.imageStreamTags(r.Context(), is, !wantsTable(r)) {
		if ist.Name == name {
			s.writeImageStreamTags(w, r, code, ist, []imagev1.ImageStreamTag{ist})
			return
		}
	}
	writeStatus(w, apierrors.NewNotFound(imageStreamTagsResource, name))
}

// putImageStreamTag is oc tag: the tag of the request's name set to follow
// tag.from, which is followed at once (copied from another stream, or imported);
// when that fails, nothing is kept and the error says why (a scheduled import keeps
// its tag, and the failure is its condition, retried at the next interval).
func (s *Server) putImageStreamTag(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	var in imagev1.ImageStreamTag
	if err := decodeBody(w, r, &in); err != nil {
		writeStatus(w, err)
		return
	}
	istName := in.Name
	if n := r.PathValue("name"); n != "" && n != in.Name {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("imagestreamtag %s: metadata.name %q does not match the request's name", n, in.Name)))
		return
	}
	streamName, tag, err := splitTagName(istName)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if err := s.validateTag(r, ns, istName, tag, in.Tag); err != nil {
		writeStatus(w, err)
		return
	}
	want := *in.Tag
	want.Name = tag
	stored, created, err := s.streamForTag(r.Context(), ns, streamName)
	if err != nil {
		writeStatus(w, err)
		return
	}
	before, hadTag := stored.Spec.SpecTag(tag)
	spec := stored.Spec
	spec.Tags = withTag(spec.Tags, want, stored.Generation+1)
	updated, err := s.streams().UpdateSpec(r.Context(), stored, stored.ObjectMeta, spec)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if want.From != nil && !want.Reference {
		t, _ := updated.Spec.SpecTag(tag)
		if err := s.followSpecTag(r.Context(), updated, t); err != nil && !want.ImportPolicy.Scheduled {
			s.undoTag(r.Context(), ns, streamName, tag, before, hadTag, created)
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("imagestreamtag %s/%s: %v", ns, istName, err)))
			return
		}
	}
	now, err := s.streams().Read(r.Context(), ns, streamName)
	if err != nil {
		writeStatus(w, err)
		return
	}
	code := http.StatusOK
	if !hadTag {
		code = http.StatusCreated
	}
	if !hasStatusTag(now, tag) {
		// A tag whose scheduled import failed has no image yet: answer with its spec.
		ist := imagev1.ImageStreamTag{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamTag", APIVersion: "image.openshift.io/v1"},
			ObjectMeta: metav1.ObjectMeta{Name: istName, Namespace: ns, UID: now.UID, ResourceVersion: now.ResourceVersion, CreationTimestamp: now.CreationTimestamp}, Tag: &want}
		writeJSON(w, code, ist)
		return
	}
	s.writeImageStreamTag(w, r, code, now, istName)
}

// validateTag checks an ImageStreamTag's tag as OpenShift does, and that the user
// may pull what it takes images from.
func (s *Server) validateTag(r *http.Request, ns, istName, tag string, ref *imagev1.TagReference) error {
	var causes []metav1.StatusCause
	if err := validateTagName(tag); err != nil {
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: "metadata.name", Message: err.Error()})
	}
	switch {
	case ref == nil:
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueRequired, Field: "tag", Message: "the tag to set is required (tag.from names the image)"})
	case ref.From == nil:
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueRequired, Field: "tag.from", Message: "the image to tag is required"})
	default:
		if msg := validateFrom(*ref.From); msg != "" {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: "tag.from", Message: msg})
		}
	}
	if len(causes) > 0 {
		return invalid(imageStreamTagsResource, "ImageStreamTag", istName, causes)
	}
	if err := s.mayPullFrom(r, ns, ref.From); err != nil {
		return apierrors.NewForbidden(imageStreamTagsResource, istName, fmt.Errorf("tag.from: %w", err))
	}
	return nil
}

// streamForTag is the stream a tag goes to, made when there is none (created).
func (s *Server) streamForTag(ctx context.Context, ns, name string) (_ *imageapi.ImageStream, created bool, _ error) {
	stored, err := s.streams().Read(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		stored, err = s.streams().Create(ctx, ns, metav1.ObjectMeta{Name: name}, imageapi.ImageStreamSpec{})
		return stored, err == nil, err
	}
	return stored, false, err
}

// withTag is tags with t set at generation (OpenShift's tag generation: the
// stream's generation that asked for it).
func withTag(tags []imagev1.TagReference, t imagev1.TagReference, generation int64) []imagev1.TagReference {
	t.Generation = &generation
	out := make([]imagev1.TagReference, 0, len(tags)+1)
	replaced := false
	for _, old := range tags {
		if old.Name == t.Name {
			out, replaced = append(out, t), true
			continue
		}
		out = append(out, old)
	}
	if !replaced {
		out = append(out, t)
	}
	return out
}

// undoTag puts a tag that could not be followed back as it was (a stream made for
// it is deleted again), so that a failed oc tag leaves nothing behind.
func (s *Server) undoTag(ctx context.Context, ns, stream, tag string, before imagev1.TagReference, had, created bool) {
	if created {
		if err := s.Dynamic.Resource(imageapi.GVR).Namespace(ns).Delete(ctx, stream, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			s.Log.Warn("deleting a stream made for a tag that failed", "imagestream", ns+"/"+stream, "err", err)
		}
		return
	}
	err := retryConflicts(func() error {
		now, err := s.streams().Read(ctx, ns, stream)
		if err != nil {
			return err
		}
		spec := now.Spec
		spec.Tags = slicesDeleteTag(spec.Tags, tag)
		if had {
			spec.Tags = withTag(spec.Tags, before, deref(before.Generation))
		}
		if _, err := s.streams().UpdateSpec(ctx, now, now.ObjectMeta, spec); err != nil {
			return err
		}
		return s.streams().SetTagCondition(ctx, ns, stream, string(now.UID), tag, nil)
	})
	if err != nil {
		s.Log.Warn("putting back a tag that failed", "imagestream", ns+"/"+stream, "tag", tag, "err", err)
	}
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func slicesDeleteTag(tags []imagev1.TagReference, tag string) []imagev1.TagReference {
	out := make([]imagev1.TagReference, 0, len(tags))
	for _, t := range tags {
		if t.Name != tag {
			out = append(out, t)
		}
	}
	return out
}

func hasStatusTag(is *imageapi.ImageStream, tag string) bool {
	_, ok := currentImage(is, tag)
	return ok
}

// deleteImageStreamTag is oc tag -d: the spec tag and the tag itself gone, from
// the stream and from the registry.
func (s *Server) deleteImageStreamTag(w http.ResponseWriter, r *http.Request) {
	ns, istName := r.PathValue("ns"), r.PathValue("name")
	streamName, tag, err := splitTagName(istName)
	if err != nil {
		writeStatus(w, err)
		return
	}
	stored, err := s.storedStream(r.Context(), ns, streamName, imageStreamTagsResource, istName)
	if err != nil {
		writeStatus(w, err)
		return
	}
	_, inSpec := stored.Spec.SpecTag(tag)
	if !inSpec && !hasStatusTag(stored, tag) {
		writeStatus(w, apierrors.NewNotFound(imageStreamTagsResource, istName))
		return
	}
	if inSpec {
		err := retryConflicts(func() error {
			now, err := s.streams().Read(r.Context(), ns, streamName)
			if err != nil {
				return err
			}
			spec := now.Spec
			spec.Tags = slicesDeleteTag(spec.Tags, tag)
			_, err = s.streams().UpdateSpec(r.Context(), now, now.ObjectMeta, spec)
			return err
		})
		if err != nil {
			writeStatus(w, err)
			return
		}
	}
	if err := s.untag(r.Context(), stored, tag); err != nil {
		writeStatus(w, err)
		return
	}
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Name: istName, Group: imageStreamTagsResource.Group, Kind: "imagestreamtags"}})
}

// untag takes tag out of the registry (a tag the registry holds) and out of the
// stream's status.
func (s *Server) untag(ctx context.Context, stored *imageapi.ImageStream, tag string) error {
	for _, t := range stored.Status.Tags {
		if t.Tag == tag && len(t.Items) > 0 && !t.Items[0].External() {
			repo, err := s.Images.Repository(repositoryName(stored))
			if err != nil {
				return err
			}
			if err := s.Images.Untag(ctx, repo.Tag(tag)); err != nil {
				return err
			}
		}
	}
	err := s.streams().RemoveTag(ctx, stored.Namespace, stored.Name, string(stored.UID), tag)
	if errors.Is(err, imageapi.ErrStreamReplaced) {
		return nil
	}
	return err
}

// writeImageStreamTags writes obj, or tags as a Table when the client prints.
func (s *Server) writeImageStreamTags(w http.ResponseWriter, r *http.Request, code int, obj any, tags []imagev1.ImageStreamTag) {
	if wantsTable(r) {
		writeJSON(w, code, imageStreamTagTable(tags, time.Now()))
		return
	}
	writeJSON(w, code, obj)
}

// imageStreamTagColumns are OpenShift's: NAME, IMAGE REFERENCE, UPDATED, and IMAGE
// NAME with -o wide.
var imageStreamTagColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
	{Name: "Image Reference", Type: "string", Description: "The location of the image."},
	{Name: "Updated", Type: "string", Description: "Last update time."},
	{Name: "Image Name", Type: "string", Priority: 1, Description: "The image the tag points at."},
}

func imageStreamTagTable(tags []imagev1.ImageStreamTag, now time.Time) metav1.Table {
	t := metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}, ColumnDefinitions: imageStreamTagColumns, Rows: []metav1.TableRow{}}
	for i := range tags {
		ist := &tags[i]
		meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: ist.ObjectMeta}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{ist.Name, ist.Image.DockerImageReference, units.HumanDuration(now.Sub(ist.CreationTimestamp.Time)) + " ago", ist.Image.Name},
			Object: runtime.RawExtension{Object: meta},
		})
	}
	return t
}

func retryConflicts(fn func() error) error { return retry.RetryOnConflict(retry.DefaultRetry, fn) }
