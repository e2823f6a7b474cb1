package credentials

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
)

// dockerHub is the one host the Docker Hub aliases are matched as.
const dockerHub = "docker.io"

var dockerHubAliases = map[string]bool{
	"docker.io":            true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// location is a normalised registry key or image: host labels, port and path.
type location struct {
	host   string // host[:port], Docker Hub aliases folded
	labels []string
	port   string
	path   string // "" or starting with "/"
}

// NormalizeKey turns a key as written in a credentials file into the kubelet's form,
// host[:port][/path]: scheme added when missing then dropped, /v1/ or /v2/ stripped.
func NormalizeKey(key string) (string, error) {
	loc, err := parseKey(key)
	if err != nil {
		return "", err
	}
	return loc.host + loc.path, nil
}

func parseKey(key string) (location, error) {
	value := strings.TrimSpace(key)
	if !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
		value = "https://" + value
	}
	u, err := url.Parse(value)
	if err != nil {
		return location{}, fmt.Errorf("not a registry address: %w", unwrapURLError(err))
	}
	if u.Host == "" {
		return location{}, fmt.Errorf("not a registry address: no host")
	}
	path := u.Path
	if strings.HasPrefix(path, "/v2/") || strings.HasPrefix(path, "/v1/") {
		path = path[3:]
	}
	if path == "/" {
		path = ""
	}
	return newLocation(u.Host, path), nil
}

func newLocation(hostport, path string) location {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	if dockerHubAliases[host] && port == "" {
		host, hostport = dockerHub, dockerHub
	}
	return location{host: hostport, labels: strings.Split(host, "."), port: port, path: path}
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// ImageRepository normalises an image reference as the kubelet does before a lookup:
// "ubuntu" → "docker.io/library/ubuntu"; tag and digest dropped.
func ImageRepository(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(strings.TrimSpace(image))
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	return reference.Domain(named) + "/" + reference.Path(named), nil
}

func parseImage(image string) (location, error) {
	repo, err := ImageRepository(image)
	if err != nil {
		return location{}, err
	}
	host, path, _ := strings.Cut(repo, "/")
	return newLocation(host, "/"+path), nil
}

// isGlob reports whether a host needs glob matching rather than equality.
func isGlob(host string) bool {
	return strings.ContainsAny(host, `*?[\`)
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
