package registry

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// switchAuthz allows whatever allow says at the moment of the request.
type switchAuthz struct{ allow bool }

func (s *switchAuthz) Allowed(rbacauthz.User, rbacauthz.Request) (bool, string) {
	return s.allow, "test"
}

// A verified token is decided again at every request: a grant removed since it was
// issued is refused at once, and a token claiming a life longer than the token
// service issues is refused however well signed.
func TestEveryRequestIsDecidedAgain(t *testing.T) {
	signer := newSigner(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, signer.JWKS(), 0o644); err != nil {
		t.Fatal(err)
	}
	authz := &switchAuthz{allow: true}
	ac, err := auth.GetAccessController(AccessControllerName, map[string]any{
		"realm": "/token", "service": "svc", "issuer": "iss", "jwks": jwks, "signingalgorithms": []any{"ES256", "EdDSA"},
		accessOptionAuthz: tokenauth.Authorizer(authz),
	})
	if err != nil {
		t.Fatal(err)
	}
	pull := []*token.ResourceActions{{Type: "repository", Name: "ns/app", Actions: []string{"pull"}}}
	try := func(lifetime time.Duration) error {
		tok, err := signer.Sign(tokenauth.Token{Issuer: "iss", Subject: "u", Groups: []string{"g"}, Audience: "svc", Access: pull, IssuedAt: time.Now(), Lifetime: lifetime})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "http://localhost:5000/v2/ns/app/manifests/v1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		_, err = ac.Authorized(req, auth.Access{Resource: auth.Resource{Type: "repository", Name: "ns/app"}, Action: "pull"})
		return err
	}
	if err := try(5 * time.Minute); err != nil {
		t.Fatalf("granted: %v", err)
	}
	authz.allow = false
	err = try(5 * time.Minute)
	if !challengeSays(t, err, `error="insufficient_scope"`) {
		t.Errorf("revoked: %v, want an insufficient_scope challenge", err)
	}
	authz.allow = true
	if err := try(10 * 365 * 24 * time.Hour); !challengeSays(t, err, `error="invalid_token"`) {
		t.Errorf("ten-year token: %v, want an invalid_token challenge", err)
	}
}

func challengeSays(t *testing.T, err error, want string) bool {
	t.Helper()
	ch, ok := err.(auth.Challenge)
	if !ok {
		return false
	}
	rec := httptest.NewRecorder()
	ch.SetHeaders(httptest.NewRequest(http.MethodGet, "http://localhost/v2/", nil), rec)
	return strings.Contains(rec.Header().Get("WWW-Authenticate"), want)
}
