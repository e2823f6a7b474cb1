package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/net/http/httpguts"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzChallenge checks that every challenge the registry can send — for any Host
// header Go's server accepts and any repository name distribution routes — is read
// back by a real client's parser (go-containerregistry's, used by crane and by the
// node agent) as the same realm, service and scope.
func FuzzChallenge(f *testing.F) {
	f.Add("localhost:5000", "project-b/app", "pull,push", true)
	f.Add("registry.example.com", "a/b/c", "pull", false)
	f.Add("[::1]:5000", "ns/x.y_z-w", "*", true)
	f.Add("0", "0", "\x89\"\\", false) // found by this target: %q wrote \x89 for a byte a client reads as-is
	f.Fuzz(func(t *testing.T, host, repo, actions string, refused bool) {
		if !httpguts.ValidHostHeader(host) || host == "" || !reference.NameRegexp.MatchString(repo) ||
			reference.NameRegexp.FindString(repo) != repo {
			t.Skip()
		}
		if strings.ContainsFunc(actions, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Skip() // a quoted-string cannot hold them; actions are words in practice
		}
		var access []auth.Access
		for _, a := range strings.Split(actions, ",") {
			access = append(access, auth.Access{Resource: auth.Resource{Type: "repository", Name: repo}, Action: a})
		}
		var err error = token.ErrTokenRequired
		if refused {
			err = token.ErrInsufficientScope
		}
		c := &challenge{err: err, realm: "/token", service: "pullgate-registry", access: access}
		req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		c.SetHeaders(req, rec)
		header := rec.Header().Get("WWW-Authenticate")

		fake := roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusUnauthorized, Header: http.Header{"Www-Authenticate": {header}},
				Body: io.NopCloser(strings.NewReader(""))}, nil
		})
		reg, perr := name.NewRegistry("registry.test", name.Insecure)
		if perr != nil {
			t.Fatal(perr)
		}
		got, perr := transport.Ping(context.Background(), reg, fake)
		if perr != nil {
			var terr *transport.Error
			if errors.As(perr, &terr) {
				t.Fatalf("challenge %q not parsed: %v", header, perr)
			}
			t.Fatal(perr)
		}
		want := map[string]string{"realm": "http://" + host + "/token", "service": "pullgate-registry", "scope": scopeParam(access)}
		if strings.ToLower(got.Scheme) != "bearer" {
			t.Fatalf("challenge %q: scheme %q", header, got.Scheme)
		}
		for k, v := range want {
			if got.Parameters[k] != v {
				t.Fatalf("challenge %q: %s = %q, want %q", header, k, got.Parameters[k], v)
			}
		}
	})
}
