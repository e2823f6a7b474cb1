// Package imagelookup resolves the image names pods and pod templates give to the
// image streams of their project, as OpenShift's image policy admission does: with
// a stream's lookupPolicy.local (oc set image-lookup STREAM), or the annotation
// alpha.image.policy.openshift.io/resolve-names on the object or its template (oc
// set image-lookup deploy/x), `app:v1` becomes `<registry>/<project>/app@sha256:…`
// once, at create or update. Names that are not a stream's are left alone. The same
// webhook sets the images of a workload's image-change triggers when they are new
// (imagetrigger follows them afterwards).
package imagelookup

import (
	"strings"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// ResolveNamesAnnotation asks for every image name of the object to be looked up
// in the project's streams, whatever their lookup policy.
const ResolveNamesAnnotation = "alpha.image.policy.openshift.io/resolve-names"

// Resolver looks names up in Streams.
type Resolver struct {
	Streams imageapi.StreamReader
	// RegistryHost is the integrated registry, for streams that do not record it.
	RegistryHost string
}

// Resolve is what image, in namespace, resolves to; ok is false when it names no
// stream's image (or the stream does not allow lookups and all is false). Only a
// bare name resolves (`app`, `app:v1`, `app@sha256:…`): one with a registry or a
// path is another registry's.
func (r Resolver) Resolve(namespace, image string, all bool) (string, bool) {
	if image == "" || strings.Contains(image, "/") {
		return "", false
	}
	name, digest, byDigest := strings.Cut(image, "@")
	tag := ""
	if !byDigest {
		name, tag, _ = strings.Cut(image, ":")
		if tag == "" {
			tag = "latest"
		}
	}
	is, ok := r.Streams.Stream(namespace, name)
	if !ok || !(all || is.Spec.LookupPolicy.Local) {
		return "", false
	}
	ev, found := is.Status.Current(tag)
	if byDigest {
		ev, found = is.Status.Image(digest)
	}
	if !found {
		return "", false
	}
	return is.PullSpec(ev, r.RegistryHost), true
}
