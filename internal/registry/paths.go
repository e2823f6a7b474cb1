package registry

import (
	"errors"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Where things are: in a registry request's path, and in storage.

// splitRoute splits /v2/<name>/<kind>/<reference>.
func splitRoute(p string) (name, kind, ref string) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", ""
	}
	best, bestKind := -1, ""
	for _, k := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, k); i > best {
			best, bestKind = i, k
		}
	}
	if best <= 0 {
		return "", "", ""
	}
	return rest[:best], strings.Trim(bestKind, "/"), rest[best+len(bestKind):]
}

// isPathNotFound reports whether err is the storage driver saying a path is not there.
func isPathNotFound(err error) bool {
	var notFound storagedriver.PathNotFoundError
	return errors.As(err, &notFound)
}

// filesystemRoot is the directory of filesystem storage, "" for any other.
func filesystemRoot(store configuration.Storage) string {
	if store.Type() != "filesystem" {
		return ""
	}
	root, _ := store.Parameters()["rootdirectory"].(string)
	return root
}
