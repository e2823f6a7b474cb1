package apiserver

import (
	"net/http"
	"strings"
	"time"

	units "github.com/docker/go-units"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

var imageStreamTagsResource = schema.GroupResource{Group: "image.openshift.io", Resource: "imagestreamtags"}

// imageStreamTag is image.openshift.io/v1 ImageStreamTag, read from a stream's
// status: the image a tag points at now. Streams made by pushes have no spec tags,
// so tag is null, as OpenShift shows a pushed tag.
type imageStreamTag struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Tag               *struct{} `json:"tag"`
	Generation        int64     `json:"generation"`
	LookupPolicy      struct {
		Local bool `json:"local"`
	} `json:"lookupPolicy"`
	Image image `json:"image"`
}

// image is image.openshift.io/v1 Image, as much as the registry records of it.
type image struct {
	metav1.ObjectMeta            `json:"metadata,omitempty"`
	DockerImageReference         string `json:"dockerImageReference"`
	DockerImageManifestMediaType string `json:"dockerImageManifestMediaType,omitempty"`
}

// imageStreamTags are the tags of is, each at the image it points at now.
func imageStreamTags(is imageStream, stored *imageapi.ImageStream) []imageStreamTag {
	var out []imageStreamTag
	for _, t := range stored.Status.Tags {
		if len(t.Items) == 0 {
			continue
		}
		now := t.Items[0]
		ist := imageStreamTag{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamTag", APIVersion: "image.openshift.io/v1"},
			ObjectMeta: metav1.ObjectMeta{Name: is.Name + ":" + t.Tag, Namespace: is.Namespace, CreationTimestamp: now.Created, ResourceVersion: is.ResourceVersion}}
		ist.Image = image{ObjectMeta: metav1.ObjectMeta{Name: now.Digest, CreationTimestamp: now.Created},
			DockerImageReference: is.Status.DockerImageRepository + "@" + now.Digest, DockerImageManifestMediaType: now.MediaType}
		out = append(out, ist)
	}
	return out
}

func (s *Server) listImageStreamTags(w http.ResponseWriter, r *http.Request) {
	stored, rv, err := s.storedStreams(r.Context(), r.PathValue("ns"))
	if err != nil {
		writeStatus(w, err)
		return
	}
	out := struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata"`
		Items           []imageStreamTag `json:"items"`
	}{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamTagList", APIVersion: "image.openshift.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: []imageStreamTag{}}
	for i := range stored {
		out.Items = append(out.Items, imageStreamTags(s.toImageStream(&stored[i]), &stored[i])...)
	}
	s.writeImageStreamTags(w, r, out, out.Items)
}

func (s *Server) getImageStreamTag(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	stream, tag, ok := strings.Cut(name, ":")
	if !ok || stream == "" || tag == "" {
		writeStatus(w, apierrors.NewBadRequest("imagestreamtag "+name+": the name must be <stream>:<tag>"))
		return
	}
	is, err := s.storedStream(r.Context(), r.PathValue("ns"), stream, imageStreamTagsResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	for _, ist := range imageStreamTags(s.toImageStream(is), is) {
		if ist.Name == name {
			s.writeImageStreamTags(w, r, ist, []imageStreamTag{ist})
			return
		}
	}
	writeStatus(w, apierrors.NewNotFound(imageStreamTagsResource, name))
}

// writeImageStreamTags writes obj, or tags as a Table when the client prints.
func (s *Server) writeImageStreamTags(w http.ResponseWriter, r *http.Request, obj any, tags []imageStreamTag) {
	if wantsTable(r) {
		writeJSON(w, http.StatusOK, imageStreamTagTable(tags, time.Now()))
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// imageStreamTagColumns are OpenShift's: NAME, IMAGE REFERENCE, UPDATED, and IMAGE
// NAME with -o wide.
var imageStreamTagColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
	{Name: "Image Reference", Type: "string", Description: "The location of the image."},
	{Name: "Updated", Type: "string", Description: "Last update time."},
	{Name: "Image Name", Type: "string", Priority: 1, Description: "The image the tag points at."},
}

func imageStreamTagTable(tags []imageStreamTag, now time.Time) metav1.Table {
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
