package imageapi

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// StreamName is the name of the ImageStream that holds the repository path within a
// namespace. A path that is already a valid Kubernetes name (app, web.v2) is its own
// name, as in OpenShift. A nested path (charts/mychart, from helm push oci://…/team/charts)
// or one a Kubernetes name cannot hold (my_app) becomes a readable name and a hash of
// the path, so no two paths share a stream: charts-mychart-1a2b3c4d. A path that
// looks like such a name itself (charts-mychart-1a2b3c4d pushed as it is) is hashed
// too, so it cannot take the nested path's stream. The stream records the path it
// holds in its annotation image.pullgate.dev/repository.
func StreamName(path string) string {
	if len(validation.IsDNS1123Subdomain(path)) == 0 && !hashedShape.MatchString(path) {
		return path
	}
	var b strings.Builder
	dash := false
	for _, r := range path {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	readable := strings.Trim(b.String(), "-.")
	if len(readable) > 200 {
		readable = strings.TrimRight(readable[:200], "-.")
	}
	sum := sha256.Sum256([]byte(path))
	if readable == "" {
		return hex.EncodeToString(sum[:4])
	}
	return readable + "-" + hex.EncodeToString(sum[:4])
}

// hashedShape is what StreamName makes of a path that is not a name of its own.
var hashedShape = regexp.MustCompile(`(^|-)[0-9a-f]{8}$`)

// Repository is the repository (namespace/path) an ImageStream holds: the path its
// annotation AnnotationRepository names, when that path is one whose stream this is
// (in its namespace, under its name) — the annotation is writable by anyone who may
// edit the stream, so it is never taken on its word — else namespace/name.
func Repository(obj *unstructured.Unstructured) string {
	return RepositoryOf(obj.GetNamespace(), obj.GetName(), obj.GetAnnotations())
}

// RepositoryOf is Repository of the stream namespace/name with annotations.
func RepositoryOf(namespace, name string, annotations map[string]string) string {
	if repo := annotations[AnnotationRepository]; repo != "" {
		if ns, path, ok := strings.Cut(repo, "/"); ok && ns == namespace && path != "" && StreamName(path) == name {
			return repo
		}
	}
	return namespace + "/" + name
}
