package registry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// allowAll is RBAC letting everyone do everything.
type allowAll struct{}

func (allowAll) Allowed(rbacauthz.User, rbacauthz.Request) (bool, string) { return true, "" }

// New assembles a registry that answers health, challenges a client without a
// token with the realm it was given, serves a client with a valid token, and
// keeps pushed blobs on the filesystem it was given.
func TestNewServesWithTokens(t *testing.T) {
	dir := t.TempDir()
	signer := newSigner(t)
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, signer.JWKS(), 0o644); err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	root := filepath.Join(dir, "storage")
	reg, err := New(context.Background(), Config{
		Storage: configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": root}},
		Service: "svc", Issuer: "iss", JWKSFile: jwks, Realm: "https://auth.example/token",
		HTTPSecret: "secret", Authz: allowAll{}, Metrics: metrics, Gatherer: metrics, StorageReserve: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if challenge := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, `realm="https://auth.example/token"`) || !strings.Contains(challenge, `service="svc"`) {
		t.Errorf("no token: %d %q", resp.StatusCode, challenge)
	}

	access := []*token.ResourceActions{{Type: "repository", Name: "b/app", Actions: []string{"pull", "push"}}}
	tok, err := signer.Sign(tokenauth.Token{Issuer: "iss", Subject: "alice", Audience: "svc", Access: access, IssuedAt: time.Now(), Lifetime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/b/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(1024, 1)
	// The token is sent as is: the client's own token exchange would go to the realm.
	rt := bearer{token: tok, next: http.DefaultTransport}
	if err := remote.Write(ref, img, remote.WithTransport(rt), remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatalf("push with a valid token: %v", err)
	}
	got, err := remote.Image(ref, remote.WithTransport(rt))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled %s, pushed %s", d, want)
	}
	if _, err := os.Stat(filepath.Join(root, "docker", "registry", "v2", "repositories", "b", "app")); err != nil {
		t.Errorf("the repository is not in the storage given: %v", err)
	}
	reg.Drain()
	resp, err = http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "draining") {
		t.Errorf("healthz while draining: %d %s", resp.StatusCode, body)
	}
}

// bearer sends a fixed token.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// distribution is configured to delete (a prune deletes), to redirect only when
// asked, and the caller's storage map is left as it was.
func TestDistributionConfig(t *testing.T) {
	store := configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": "/r"}}
	dc := distributionConfig(Config{Storage: store}, configuration.Parameters{})
	if dc.Storage["delete"]["enabled"] != true || dc.Storage["redirect"]["disable"] != true || dc.Log.AccessLog.Disabled != true {
		t.Errorf("storage %v", dc.Storage)
	}
	if _, touched := store["delete"]; touched {
		t.Error("the caller's storage configuration was changed")
	}
	kept := configuration.Storage{"s3": configuration.Parameters{}, "delete": configuration.Parameters{"enabled": false}}
	if dc := distributionConfig(Config{Storage: kept, Redirect: true}, nil); dc.Storage["delete"]["enabled"] != false || dc.Storage["redirect"]["disable"] != false {
		t.Errorf("configured delete or redirect overridden: %v", dc.Storage)
	}
}

// A request path names its repository, route kind and reference, with the
// repository taken whole even when it holds a route word.
func TestSplitRoute(t *testing.T) {
	for path, want := range map[string][3]string{
		"/v2/b/app/manifests/v1":          {"b/app", "manifests", "v1"},
		"/v2/b/blobs/app/blobs/sha256:ab": {"b/blobs/app", "blobs", "sha256:ab"},
		"/v2/b/app/tags/list":             {"b/app", "tags", "list"},
		"/v2/b/app/referrers/sha256:ab":   {"b/app", "referrers", "sha256:ab"},
		"/v2/":                            {},
		"/v2/_catalog":                    {},
		"/healthz":                        {},
	} {
		n, k, r := splitRoute(path)
		if [3]string{n, k, r} != want {
			t.Errorf("splitRoute(%q) = %q %q %q, want %q", path, n, k, r, want)
		}
	}
}
