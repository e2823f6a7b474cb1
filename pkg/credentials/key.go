package credentials

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
)

// defaultRegistryHost is the key the kubelet falls back to for a Docker Hub image
// when no key matched it (docker login writes https://index.docker.io/v1/).
const defaultRegistryHost = "index.docker.io"

// location is a key or an image as the kubelet's URLsMatch sees it: host labels,
// port and path (decoded).
type location struct {
	labels []string
	port   string
	path   string
}

// hostKey is the host as an index key: labels and port.
func (l location) hostKey() string { return strings.Join(l.labels, ".") + ":" + l.port }

// NormalizeKey turns a key as written in a credentials file into the kubelet's form,
// host[:port][/path] (BasicDockerKeyring.Add): https:// added when there is no
// scheme, then dropped, and /v1/ or /v2/ dropped from the path.
func NormalizeKey(key string) (string, error) {
	value := key
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	u, err := url.Parse(value)
	if err != nil {
		return "", fmt.Errorf("not a registry address: %w", unwrapURLError(err))
	}
	path := u.Path
	if strings.HasPrefix(path, "/v2/") || strings.HasPrefix(path, "/v1/") {
		path = path[3:]
	}
	if path != "" && path != "/" {
		return u.Host + path, nil
	}
	return u.Host, nil
}

// parseLocation reads a normalised key or an image repository as URLsMatchStr does:
// as a URL without its scheme (so a key's path is decoded a second time, as the
// kubelet decodes it), its host split into labels and port.
func parseLocation(s string) (location, error) {
	u, err := url.Parse("https://" + s)
	if err != nil {
		return location{}, fmt.Errorf("not a registry address: %w", unwrapURLError(err))
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return location{labels: strings.Split(host, "."), port: port, path: u.Path}, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// ImageRepository is the repository the kubelet looks an image's credentials up for
// (parsers.ParseImageName): "ubuntu" → "docker.io/library/ubuntu"; tag and digest
// dropped.
func ImageRepository(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("couldn't parse image name %q: %w", image, err)
	}
	return named.Name(), nil
}

// imageLocation is where the kubelet looks image's credentials up, and whether it is
// Docker Hub's.
func imageLocation(image string) (location, bool, error) {
	repo, err := ImageRepository(image)
	if err != nil {
		return location{}, false, err
	}
	loc, err := parseLocation(repo)
	if err != nil {
		// A repository the reference grammar takes but a URL parser refuses ("[1]:0/x"):
		// the kubelet's URLsMatchStr fails on it, so it matches no key, and only its
		// Docker Hub fallback applies. A location with no labels matches no key.
		return location{}, isDefaultRegistryMatch(repo), nil
	}
	return loc, isDefaultRegistryMatch(repo), nil
}

// isDefaultRegistryMatch is the kubelet's test for an image of Docker Hub, but for
// one thing (DifferenceLocalhostIsNotDockerHub): the kubelet counts an image on
// "localhost" as Docker Hub's, and would send it a Docker Hub credential.
func isDefaultRegistryMatch(repo string) bool {
	first, _, found := strings.Cut(repo, "/")
	if first == "" || first == "localhost" {
		return false
	}
	if !found {
		return true
	}
	if first == "docker.io" || first == "index.docker.io" {
		return true
	}
	return !strings.ContainsAny(first, ".:")
}

// isGlob reports whether a label needs glob matching rather than equality.
func isGlob(label string) bool {
	return strings.ContainsAny(label, `*?[\`)
}

// matches is the kubelet's URLsMatch: equal ports, the same number of DNS labels,
// each label a glob match, and the key's path a string prefix of the image's.
func (key location) matches(image location) bool {
	if key.port != image.port || len(key.labels) != len(image.labels) {
		return false
	}
	if !strings.HasPrefix(image.path, key.path) {
		return false
	}
	for i, pattern := range key.labels {
		ok, err := filepath.Match(pattern, image.labels[i])
		if err != nil || !ok {
			return false
		}
	}
	return true
}

// redactKey is a key fit for a message: any user:password@ in it removed.
func redactKey(key string) string {
	scheme, rest, found := strings.Cut(key, "://")
	if !found {
		rest, scheme = key, ""
	}
	hostEnd := strings.IndexAny(rest, "/?#")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	if at := strings.LastIndexByte(rest[:hostEnd], '@'); at >= 0 {
		rest = "…@" + rest[at+1:]
	}
	if found {
		return scheme + "://" + rest
	}
	return rest
}
