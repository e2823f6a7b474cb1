package apiserver

import (
	"context"
	"net/http"
	"slices"
	"strings"

	imagev1 "github.com/openshift/api/image/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

var (
	imagesResource            = schema.GroupResource{Group: "image.openshift.io", Resource: "images"}
	imageStreamImagesResource = schema.GroupResource{Group: "image.openshift.io", Resource: "imagestreamimages"}
)

// Images (cluster-scoped, for cluster administrators as on OpenShift) are every
// image some stream's tags point or pointed at, described from the registry.

// heldImages are the images every stream holds, one per digest: where the newest
// event that names it says it is.
func (s *Server) heldImages(ctx context.Context) (map[string]heldImage, string, error) {
	stored, rv, err := s.storedStreams(ctx, "")
	if err != nil {
		return nil, "", err
	}
	out := map[string]heldImage{}
	for i := range stored {
		repo := s.repository(&stored[i])
		for _, t := range stored[i].Status.Tags {
			for _, ev := range t.Items {
				if _, ok := out[ev.Digest]; !ok {
					out[ev.Digest] = heldImage{namespace: stored[i].Namespace, reference: ev.Reference(repo)}
				}
			}
		}
	}
	return out, rv, nil
}

// heldImage is where an image is, and the project whose credentials read it.
type heldImage struct{ namespace, reference string }

func (s *Server) image(ctx context.Context, where heldImage) (imagev1.Image, error) {
	img, err := s.describe(ctx, where.namespace, where.reference)
	if err != nil {
		return imagev1.Image{}, err
	}
	img.TypeMeta = metav1.TypeMeta{Kind: "Image", APIVersion: "image.openshift.io/v1"}
	img.DockerImageReference = where.reference
	return img, nil
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	held, rv, err := s.heldImages(r.Context())
	if err != nil {
		writeStatus(w, err)
		return
	}
	digests := make([]string, 0, len(held))
	for d := range held {
		digests = append(digests, d)
	}
	slices.Sort(digests)
	out := imagev1.ImageList{TypeMeta: metav1.TypeMeta{Kind: "ImageList", APIVersion: "image.openshift.io/v1"}, ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: []imagev1.Image{}}
	for _, d := range digests {
		img, err := s.image(r.Context(), held[d])
		if err != nil {
			s.Log.Warn("describing an image", "image", d, "err", err)
			img = imagev1.Image{TypeMeta: metav1.TypeMeta{Kind: "Image", APIVersion: "image.openshift.io/v1"}, ObjectMeta: metav1.ObjectMeta{Name: d}, DockerImageReference: held[d].reference}
		}
		out.Items = append(out.Items, img)
	}
	if wantsTable(r) {
		writeJSON(w, http.StatusOK, imageTable(out.Items))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	held, _, err := s.heldImages(r.Context())
	if err != nil {
		writeStatus(w, err)
		return
	}
	where, ok := held[name]
	if !ok {
		writeStatus(w, apierrors.NewNotFound(imagesResource, name))
		return
	}
	img, err := s.image(r.Context(), where)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if wantsTable(r) {
		writeJSON(w, http.StatusOK, imageTable([]imagev1.Image{img}))
		return
	}
	writeJSON(w, http.StatusOK, img)
}

// refusePrune answers the writes of oc adm prune images (deleting images, rewriting
// a stream's history): the registry's storage, its streams and its prune are one,
// and pruned by pullgate adm prune. The registry refuses oc's blob deletions too.
func (s *Server) refusePrune(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
		Message: "oc adm prune images is not served by pullgate: an image stream's history and images are the integrated registry's, pruned by `pullgate adm prune --confirm` (it keeps what any stream holds and never races a push)"}})
}

var imageColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "The image's digest."},
	{Name: "Image Reference", Type: "string", Description: "The location of the image."},
}

func imageTable(imgs []imagev1.Image) metav1.Table {
	t := metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}, ColumnDefinitions: imageColumns, Rows: []metav1.TableRow{}}
	for i := range imgs {
		meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: imgs[i].ObjectMeta}
		t.Rows = append(t.Rows, metav1.TableRow{Cells: []any{imgs[i].Name, imgs[i].DockerImageReference}, Object: runtime.RawExtension{Object: meta}})
	}
	return t
}

// getImageStreamImage is <stream>@<digest>: an image of the stream's history, as
// oc new-app and oc describe isimage read it.
func (s *Server) getImageStreamImage(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	streamName, dgst, ok := strings.Cut(name, "@")
	if !ok || streamName == "" || dgst == "" {
		writeStatus(w, apierrors.NewBadRequest("imagestreamimage "+name+": the name must be <stream>@<digest>"))
		return
	}
	stored, err := s.storedStream(r.Context(), ns, streamName, imageStreamImagesResource, name)
	if err != nil {
		writeStatus(w, err)
		return
	}
	ev, found := findImage(stored, dgst)
	if !found {
		writeStatus(w, apierrors.NewNotFound(imageStreamImagesResource, name))
		return
	}
	ref := ev.Reference(s.repository(stored))
	img, err := s.image(r.Context(), heldImage{namespace: ns, reference: ref})
	if err != nil {
		writeStatus(w, err)
		return
	}
	img.TypeMeta = metav1.TypeMeta{}
	out := imagev1.ImageStreamImage{TypeMeta: metav1.TypeMeta{Kind: "ImageStreamImage", APIVersion: "image.openshift.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: stored.UID, ResourceVersion: stored.ResourceVersion, CreationTimestamp: ev.Created}, Image: img}
	if wantsTable(r) {
		writeJSON(w, http.StatusOK, imageTable([]imagev1.Image{img}))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// findImage is the event of stored's history with digest dgst; a digest prefix
// names it too, as OpenShift allows.
func findImage(stored *imageapi.ImageStream, dgst string) (imageapi.TagEvent, bool) {
	for _, t := range stored.Status.Tags {
		for _, ev := range t.Items {
			if ev.Digest == dgst || len(dgst) >= len("sha256:")+6 && strings.HasPrefix(ev.Digest, dgst) {
				return ev, true
			}
		}
	}
	return imageapi.TagEvent{}, false
}
