package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	imagev1 "github.com/openshift/api/image/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// Tag writes: oc tag (imagestreamtags create and update) and oc tag -d, each
// leaving the stream whole when it fails.

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
	// A client that hung up (maybe why the copy failed) does not stop the undo.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), followTimeout)
	defer cancel()
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
		spec.Tags = withoutTag(spec.Tags, tag)
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

// deref is *p, or 0 for nil.
func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// withoutTag is tags without the one named tag.
func withoutTag(tags []imagev1.TagReference, tag string) []imagev1.TagReference {
	out := make([]imagev1.TagReference, 0, len(tags))
	for _, t := range tags {
		if t.Name != tag {
			out = append(out, t)
		}
	}
	return out
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
			spec.Tags = withoutTag(spec.Tags, tag)
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

func retryConflicts(fn func() error) error { return retry.RetryOnConflict(retry.DefaultRetry, fn) }
