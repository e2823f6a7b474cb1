package images

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/openshift/api/image/docker10"
	imagev1 "github.com/openshift/api/image/v1"

	"pullgate.dev/pullgate/pkg/credentials"
)

// basicRegistry is an in-memory registry that lets only user good in; it returns
// the host.
func basicRegistry(t *testing.T) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "good" || p != "s3cret-pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "good", Password: "s3cret-pw"})); err != nil {
		t.Fatal(err)
	}
}

func candidate(user string) credentials.Candidate {
	return credentials.Candidate{AuthConfig: authn.AuthConfig{Username: user, Password: "s3cret-pw"}, Description: "secret p/" + user}
}

// An import tries the project's credentials in order and says which one read it;
// when all are refused, the error names the registry, each refusal and the fix.
func TestImportTriesCredentialsInOrder(t *testing.T) {
	host := basicRegistry(t)
	img, _ := random.Image(64, 1)
	img, _ = mutate.Config(img, v1.Config{Env: []string{"A=b"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}, Labels: map[string]string{"k": "v"}})
	push(t, host+"/org/app:v1", img)
	r := NewRegistry("integrated:5000", nil, nil)
	ref, _ := name.ParseReference(host+"/org/app:v1", name.Insecure)

	got, err := r.Import(context.Background(), ref, credentials.Candidates{List: []credentials.Candidate{candidate("bad"), candidate("good")}}, imagev1.ImportModeLegacy)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if got.Reference.DigestStr() != d.String() || got.Credential != "secret p/good" || got.Image.DockerImageReference != "" {
		t.Errorf("imported %s with %q", got.Reference, got.Credential)
	}
	var meta docker10.DockerImage
	if err := json.Unmarshal(got.Image.DockerImageMetadata.Raw, &meta); err != nil || meta.Config == nil || meta.Config.Env[0] != "A=b" ||
		len(meta.Config.ExposedPorts) != 1 || meta.Config.Labels["k"] != "v" || meta.Size == 0 {
		t.Errorf("metadata %s: %v", got.Image.DockerImageMetadata.Raw, err)
	}
	if len(got.Image.DockerImageLayers) != 1 || got.Image.DockerImageConfig == "" {
		t.Errorf("layers %v, config %q", got.Image.DockerImageLayers, got.Image.DockerImageConfig)
	}

	_, err = r.Import(context.Background(), ref, credentials.Candidates{List: []credentials.Candidate{candidate("bad")}}, imagev1.ImportModeLegacy)
	var ie *ImportError
	if !errors.As(err, &ie) || !ie.Refused || !strings.Contains(err.Error(), host+" refused") || !strings.Contains(err.Error(), "secret p/bad") ||
		!strings.Contains(err.Error(), "oc create secret docker-registry <name> --docker-server="+host) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("refused import: %v", err)
	}
}

// Legacy takes this platform's image out of an index; PreserveOriginal keeps the
// index and lists its manifests.
func TestImportModes(t *testing.T) {
	host := basicRegistry(t)
	idx, _ := random.Index(64, 1, 2)
	m, _ := idx.IndexManifest()
	for i := range m.Manifests {
		m.Manifests[i].Platform = &v1.Platform{OS: "linux", Architecture: []string{"amd64", "arm64"}[i]}
	}
	platformed := mutate.IndexMediaType(mutate.AppendManifests(mutate.IndexMediaType(emptyIndex(), "application/vnd.oci.image.index.v1+json"), addenda(t, idx, m)...), "application/vnd.oci.image.index.v1+json")
	r, _ := name.ParseReference(host+"/org/multi:v1", name.Insecure)
	if err := remote.WriteIndex(r, platformed, remote.WithAuth(&authn.Basic{Username: "good", Password: "s3cret-pw"})); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry("integrated:5000", nil, nil)
	creds := credentials.Candidates{List: []credentials.Candidate{candidate("good")}}
	whole, err := reg.Import(context.Background(), r, creds, imagev1.ImportModePreserveOriginal)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.Image.DockerImageManifests) != 2 || !strings.Contains(whole.MediaType, "index") {
		t.Errorf("PreserveOriginal: %s with %d manifests", whole.MediaType, len(whole.Image.DockerImageManifests))
	}
	one, err := reg.Import(context.Background(), r, creds, imagev1.ImportModeLegacy)
	if err != nil {
		t.Fatal(err)
	}
	if one.Reference.DigestStr() == whole.Reference.DigestStr() || len(one.Image.DockerImageLayers) != 1 {
		t.Errorf("Legacy took %s (%d layers)", one.Reference, len(one.Image.DockerImageLayers))
	}
}

func emptyIndex() v1.ImageIndex { return empty.Index }

// addenda are idx's images with the platforms m gives them.
func addenda(t *testing.T, idx v1.ImageIndex, m *v1.IndexManifest) []mutate.IndexAddendum {
	t.Helper()
	var out []mutate.IndexAddendum
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: d.Platform}})
	}
	return out
}
