package apiserver

import (
	"context"
	"net/http"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/google/go-containerregistry/pkg/name"
	imagev1 "github.com/openshift/api/image/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

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
		if stored, ok := stored.Status.Current(t.Tag); ok && ist.Image.DockerImageManifestMediaType == "" {
			ist.Image.DockerImageManifestMediaType = stored.MediaType
		}
		out = append(out, ist)
	}
	return out
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
	return s.Images.Describe(ctx, d, images.FirstCredential(creds))
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

func hasStatusTag(is *imageapi.ImageStream, tag string) bool {
	_, ok := is.Status.Current(tag)
	return ok
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
