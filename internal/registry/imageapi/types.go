// Package imageapi owns the ImageStream API (image.pullgate.dev/v1), served by the
// cluster's own API server as a CustomResourceDefinition: a repository of the
// integrated registry, its tags and each tag's history of digests.
package imageapi

import (
	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of pullgate's image API; RBAC rules of the registry roles
// name it, with the resources imagestreams and imagestreams/layers as OpenShift does.
const (
	Group    = "image.pullgate.dev"
	Version  = "v1"
	Resource = "imagestreams"
	// LayersSubresource is what RBAC checks for registry access: get is pull,
	// update is push. It is never served; it exists in rules only, as in OpenShift.
	LayersSubresource = "layers"
	Kind              = "ImageStream"
)

// AnnotationRepository names the repository an ImageStream holds (namespace/path),
// for a path that is not the stream's own name (a nested one, charts/mychart).
const AnnotationRepository = Group + "/repository"

// GVR is the ImageStream resource.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// ImageStream is one repository of the integrated registry, <namespace>/<name>.
type ImageStream struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ImageStreamSpec   `json:"spec,omitempty"`
	Status            ImageStreamStatus `json:"status,omitempty"`
}

// ImageStreamSpec is what users ask of a stream, in OpenShift's words
// (image.openshift.io/v1): tags that point elsewhere (oc tag, oc import-image) and
// whether pods may name the stream's tags (oc set image-lookup). Streams made by
// pushes have none.
type ImageStreamSpec struct {
	LookupPolicy imagev1.ImageLookupPolicy `json:"lookupPolicy,omitempty"`
	Tags         []imagev1.TagReference    `json:"tags,omitempty"`
}

// SpecTag is the spec tag named tag, if any.
func (s ImageStreamSpec) SpecTag(tag string) (imagev1.TagReference, bool) {
	for _, t := range s.Tags {
		if t.Name == tag {
			return t, true
		}
	}
	return imagev1.TagReference{}, false
}

// ImageStreamStatus records what the registry holds.
type ImageStreamStatus struct {
	// DockerImageRepository is where to pull from, e.g. localhost:5000/project-b/app.
	DockerImageRepository string `json:"dockerImageRepository,omitempty"`
	// Tags, each with its history, newest first.
	Tags []NamedTagEventList `json:"tags,omitempty"`
	// TagNames is what kubectl get shows of the tags: comma-separated, the most
	// recently moved first, the rest counted past 40 characters.
	TagNames string `json:"tagNames,omitempty"`
	// Referrers are the manifests pushed with a subject (signatures, SBOMs,
	// attestations), newest first, at most MaxReferrers.
	Referrers []Referrer `json:"referrers,omitempty"`
}

// Referrer is a manifest that refers to another (OCI 1.1 subject).
type Referrer struct {
	// Subject is the digest of the manifest it refers to.
	Subject      string      `json:"subject"`
	Digest       string      `json:"digest"`
	MediaType    string      `json:"mediaType,omitempty"`
	ArtifactType string      `json:"artifactType,omitempty"`
	Created      metav1.Time `json:"created"`
}

// MaxReferrers bounds a stream's referrers.
const MaxReferrers = 100

// NamedTagEventList is one tag's history.
type NamedTagEventList struct {
	Tag   string     `json:"tag"`
	Items []TagEvent `json:"items"`
	// Conditions say why the tag's spec could not be followed (an import that
	// failed), as OpenShift's ImportSuccess condition.
	Conditions []imagev1.TagEventCondition `json:"conditions,omitempty"`
}

// TagEvent is one digest a tag pointed at.
type TagEvent struct {
	Created   metav1.Time `json:"created"`
	Digest    string      `json:"digest"`
	MediaType string      `json:"mediaType,omitempty"`
	// ArtifactType tells images from charts, signatures and other artifacts: the
	// manifest's artifactType, else its config's media type.
	ArtifactType string `json:"artifactType,omitempty"`
	// Size is the manifest's and everything it names': config and layers for an
	// image, the manifest alone for an index.
	Size int64 `json:"size,omitempty"`
	// Generation is the stream's metadata.generation when the tag moved: which
	// version of the spec the event follows.
	Generation int64 `json:"generation,omitempty"`
	// DockerImageReference is where an imported image is, <registry>/<repo>@<digest>,
	// for a tag that points outside the integrated registry; empty for the
	// registry's own images (<dockerImageRepository>@<digest>).
	DockerImageReference string `json:"dockerImageReference,omitempty"`
}

// External reports whether the event points outside the integrated registry: an
// import the registry's storage does not hold.
func (e TagEvent) External() bool { return e.DockerImageReference != "" }

// MaxTagHistory bounds each tag's history.
const MaxTagHistory = 10

// History lists every digest the tags point or pointed at.
func (s ImageStreamStatus) History() []string {
	var out []string
	for _, t := range s.Tags {
		for _, item := range t.Items {
			out = append(out, item.Digest)
		}
	}
	return out
}

// Current is the event tag points at now, if it points at an image.
func (s ImageStreamStatus) Current(tag string) (TagEvent, bool) {
	for _, t := range s.Tags {
		if t.Tag == tag && len(t.Items) > 0 {
			return t.Items[0], true
		}
	}
	return TagEvent{}, false
}

// PullRepository is where the stream's own images are pulled from,
// host/namespace/path: as recorded, else at host.
func (is *ImageStream) PullRepository(host string) string {
	if is.Status.DockerImageRepository != "" {
		return is.Status.DockerImageRepository
	}
	return host + "/" + RepositoryOf(is.Namespace, is.Name, is.Annotations)
}

// Reference is where the image of e is: an import's source, else repo@digest (repo
// the stream's PullRepository).
func (e TagEvent) Reference(repo string) string {
	if e.External() {
		return e.DockerImageReference
	}
	return repo + "@" + e.Digest
}

// PullSpec is where pods pull the image of ev, an event of the stream: an import
// the integrated registry pulls through from it, any other import from its source,
// the registry's own images from it.
func (is *ImageStream) PullSpec(ev TagEvent, host string) string {
	if _, through := is.PulledThrough(ev.Digest); !ev.External() || through {
		return is.PullRepository(host) + "@" + ev.Digest
	}
	return ev.DockerImageReference
}

// PullsThrough reports whether tag's imports are pulled through the integrated
// registry: its spec tag has reference policy Local.
func (is *ImageStream) PullsThrough(tag string) bool {
	spec, ok := is.Spec.SpecTag(tag)
	return ok && spec.ReferencePolicy.Type == imagev1.LocalTagReferencePolicy
}

// PulledThrough is the import of digest, now or in the history of a tag that
// PullsThrough, if there is one.
func (is *ImageStream) PulledThrough(digest string) (TagEvent, bool) {
	for _, t := range is.Status.Tags {
		if !is.PullsThrough(t.Tag) {
			continue
		}
		for _, ev := range t.Items {
			if ev.Digest == digest && ev.External() {
				return ev, true
			}
		}
	}
	return TagEvent{}, false
}

// Image is the newest event of any tag's history naming digest, if any.
func (s ImageStreamStatus) Image(digest string) (TagEvent, bool) {
	for _, t := range s.Tags {
		for _, ev := range t.Items {
			if ev.Digest == digest {
				return ev, true
			}
		}
	}
	return TagEvent{}, false
}
