package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// Spec tags, as OpenShift follows them: a tag from DockerImage is imported from its
// registry with the project's pull secrets; a tag from another stream's tag or image
// is copied into this stream's repository in the integrated registry (its blobs
// mounted, not copied), so that pods pull it from here.

func (s *Server) streams() imageapi.Streams { return imageapi.Streams{Client: s.Dynamic} }

// tagNameRE is a Docker tag, as OpenShift validates spec tags.
var tagNameRE = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

func validateTagName(tag string) error {
	if !tagNameRE.MatchString(tag) {
		return fmt.Errorf("%q is not a valid tag: letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-'", tag)
	}
	return nil
}

// validateFrom says what is wrong with a spec tag's source, or "".
func validateFrom(from corev1.ObjectReference) string {
	switch from.Kind {
	case "DockerImage":
		if _, err := name.ParseReference(images.TrimScheme(from.Name)); err != nil {
			return fmt.Sprintf("%q is not an image reference: %v", from.Name, err)
		}
	case "ImageStreamTag":
		if stream, tag, ok := strings.Cut(from.Name, ":"); !ok || stream == "" || tag == "" {
			return fmt.Sprintf("%q: an ImageStreamTag is <stream>:<tag>", from.Name)
		}
	case "ImageStreamImage":
		if stream, dgst, ok := strings.Cut(from.Name, "@"); !ok || stream == "" || !strings.HasPrefix(dgst, "sha256:") {
			return fmt.Sprintf("%q: an ImageStreamImage is <stream>@sha256:<digest>", from.Name)
		}
	default:
		return fmt.Sprintf("kind %q: want DockerImage, ImageStreamTag or ImageStreamImage", from.Kind)
	}
	return ""
}

func specTag(tags []imagev1.TagReference, name string) (imagev1.TagReference, bool) {
	return imageapi.ImageStreamSpec{Tags: tags}.SpecTag(name)
}

func sameFrom(a, b *corev1.ObjectReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Kind == b.Kind && a.Name == b.Name && a.Namespace == b.Namespace
}

// changedTags are the tags of now that are new since old or follow something else.
func changedTags(old, now []imagev1.TagReference) []string {
	var out []string
	for _, t := range now {
		prev, ok := specTag(old, t.Name)
		if !ok || !sameFrom(prev.From, t.From) || !equalGeneration(prev.Generation, t.Generation) || prev.ImportPolicy != t.ImportPolicy {
			out = append(out, t.Name)
		}
	}
	return out
}

func equalGeneration(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// sourceStream is the namespace and stream a spec tag takes images from inside the
// integrated registry; ok is false for an external image.
func sourceStream(ns string, from *corev1.ObjectReference) (srcNS, stream string, ok bool) {
	if from == nil || from.Kind == "DockerImage" {
		return "", "", false
	}
	srcNS = from.Namespace
	if srcNS == "" {
		srcNS = ns
	}
	stream, _, _ = strings.Cut(from.Name, ":")
	stream, _, _ = strings.Cut(stream, "@")
	return srcNS, stream, true
}

// mayPullFrom checks, as OpenShift does, that the user may pull the stream a tag
// takes its images from: get on its imagestreams/layers.
func (s *Server) mayPullFrom(r *http.Request, ns string, from *corev1.ObjectReference) error {
	srcNS, stream, ok := sourceStream(ns, from)
	if !ok {
		return nil
	}
	u := requester(r)
	req := rbacauthz.Request{Verb: "get", Namespace: srcNS, Group: imageapi.Group, Resource: imageapi.Resource, Subresource: imageapi.LayersSubresource, Name: stream}
	if !s.Authz.Decide(u, req).Allowed {
		return fmt.Errorf("user %q cannot pull from image stream %s/%s (get imagestreams/layers): ask for it: pullgate policy add-role-to-user system:image-puller %s -n %s", u.Name, srcNS, stream, u.Name, srcNS)
	}
	return nil
}

// followSpecTags follows each of tags of stored; what fails is recorded as the
// tag's ImportSuccess condition. It returns the stream as it is after.
func (s *Server) followSpecTags(ctx context.Context, stored *imageapi.ImageStream, tags []string) *imageapi.ImageStream {
	if len(tags) == 0 {
		return stored
	}
	for _, tag := range tags {
		t, _ := stored.Spec.SpecTag(tag)
		if t.From == nil || t.Reference {
			continue
		}
		_ = s.followSpecTag(ctx, stored, t)
	}
	if now, err := s.streams().Read(ctx, stored.Namespace, stored.Name); err == nil {
		return now
	}
	return stored
}

// followSpecTag points tag t of stored at what t.From names now, or records why
// it could not.
func (s *Server) followSpecTag(ctx context.Context, stored *imageapi.ImageStream, t imagev1.TagReference) error {
	ctx, cancel := context.WithTimeout(ctx, followTimeout)
	defer cancel()
	ev, err := s.resolveFrom(ctx, stored, t)
	streams := s.streams()
	uid := string(stored.UID)
	if err != nil {
		cond := &imagev1.TagEventCondition{Type: imagev1.ImportSuccess, Status: corev1.ConditionFalse, LastTransitionTime: metav1.Now(),
			Reason: failureReason(err), Message: err.Error(), Generation: stored.Generation}
		if cerr := streams.SetTagCondition(ctx, stored.Namespace, stored.Name, uid, t.Name, cond); cerr != nil {
			s.Log.Warn("recording a failed import", "imagestream", stored.Namespace+"/"+stored.Name, "tag", t.Name, "err", cerr)
		}
		return err
	}
	ev.Generation = stored.Generation
	if err := streams.RecordTag(ctx, stored.Namespace, stored.Name, uid, s.repository(stored), t.Name, ev); err != nil {
		return err
	}
	return streams.SetTagCondition(ctx, stored.Namespace, stored.Name, uid, t.Name, nil)
}

// followTimeout bounds one tag's import or copy.
const followTimeout = 2 * time.Minute

// resolveFrom finds (and for another stream's image, copies here) what t.From names.
func (s *Server) resolveFrom(ctx context.Context, stored *imageapi.ImageStream, t imagev1.TagReference) (imageapi.TagEvent, error) {
	if t.From.Kind == "DockerImage" {
		ev, _, err := s.importImage(ctx, stored.Namespace, t.From.Name, t.ImportPolicy)
		return ev, err
	}
	srcNS, streamName, _ := sourceStream(stored.Namespace, t.From)
	src, err := s.streams().Read(ctx, srcNS, streamName)
	if err != nil {
		return imageapi.TagEvent{}, fmt.Errorf("image stream %s/%s: %w", srcNS, streamName, err)
	}
	ev, err := imageIn(src, t.From)
	if err != nil || ev.External() {
		ev.Created = metav1.Now()
		return ev, err
	}
	from, err := s.Images.Repository(repositoryName(src))
	if err != nil {
		return imageapi.TagEvent{}, err
	}
	to, err := s.Images.Repository(repositoryName(stored))
	if err != nil {
		return imageapi.TagEvent{}, err
	}
	desc, err := s.Images.Copy(ctx, from.Digest(ev.Digest), to.Tag(t.Name))
	if err != nil {
		return imageapi.TagEvent{}, err
	}
	return imageapi.TagEvent{Created: metav1.Now(), Digest: desc.Digest.String(), MediaType: string(desc.MediaType), ArtifactType: ev.ArtifactType, Size: ev.Size}, nil
}

// imageIn is the event of src that from names: a tag's current image, or an image
// of the stream's history.
func imageIn(src *imageapi.ImageStream, from *corev1.ObjectReference) (imageapi.TagEvent, error) {
	if _, tag, ok := strings.Cut(from.Name, ":"); ok && from.Kind == "ImageStreamTag" {
		if ev, ok := src.Status.Current(tag); ok {
			return ev, nil
		}
		return imageapi.TagEvent{}, fmt.Errorf("imagestreamtag %s/%s has no image: push one, or tag one there first", src.Namespace, from.Name)
	}
	_, dgst, _ := strings.Cut(from.Name, "@")
	if ev, ok := findImage(src, dgst); ok {
		return ev, nil
	}
	return imageapi.TagEvent{}, fmt.Errorf("imagestreamimage %s/%s: the stream has no such image", src.Namespace, from.Name)
}

// importImage reads from with the project's pull secrets: the tag event that
// records it, and the image.
func (s *Server) importImage(ctx context.Context, ns, from string, policy imagev1.TagImportPolicy) (imageapi.TagEvent, imagev1.Image, error) {
	ref, err := parseExternal(from, policy)
	if err != nil {
		return imageapi.TagEvent{}, imagev1.Image{}, err
	}
	creds, err := images.ProjectCredentials(ctx, s.Client, ns, ref.String())
	if err != nil {
		return imageapi.TagEvent{}, imagev1.Image{}, err
	}
	got, err := s.Images.Import(ctx, ref, creds, policy.ImportMode)
	if err != nil {
		return imageapi.TagEvent{}, imagev1.Image{}, err
	}
	got.Image.DockerImageReference = got.Reference.String()
	return imageapi.TagEvent{Created: metav1.Now(), Digest: got.Reference.DigestStr(), MediaType: got.MediaType, DockerImageReference: got.Reference.String()}, got.Image, nil
}

func parseExternal(from string, policy imagev1.TagImportPolicy) (name.Reference, error) {
	var opts []name.Option
	if policy.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(images.TrimScheme(from), opts...)
	if err != nil {
		return nil, fmt.Errorf("%q is not an image reference: %w", from, err)
	}
	return ref, nil
}

// failureReason is OpenShift's reason for a failed import.
func failureReason(err error) string {
	var ie *images.ImportError
	switch {
	case errors.As(err, &ie) && ie.Refused:
		return "Unauthorized"
	case strings.Contains(err.Error(), "MANIFEST_UNKNOWN"), strings.Contains(err.Error(), "NAME_UNKNOWN"), strings.Contains(err.Error(), "has no image"), strings.Contains(err.Error(), "not found"):
		return "NotFound"
	default:
		return "InternalError"
	}
}
