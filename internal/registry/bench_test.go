package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/rbacauthz/rbacauthztest"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// The cost of deciding every request's access again from RBAC (10,000 RoleBindings in
// informers), beside distribution's token verification alone, in the same run.
func BenchmarkRequestAuthorization(b *testing.B) {
	objs := rbacauthztest.PullerBindings(10000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	authz, err := rbacauthz.NewForClient(ctx, fake.NewClientset(objs...))
	if err != nil {
		b.Fatal(err)
	}
	signer := newSigner(b)
	jwks := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, signer.JWKS(), 0o644); err != nil {
		b.Fatal(err)
	}
	tok, err := signer.Sign(tokenauth.Token{Issuer: "iss", Subject: "system:serviceaccount:clients:sa-4242", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:clients"}, Audience: "svc",
		Access: []*token.ResourceActions{{Type: "repository", Name: "ns-242/app", Actions: []string{"pull"}}}, IssuedAt: time.Now(), Lifetime: 5 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	access := auth.Access{Resource: auth.Resource{Type: "repository", Name: "ns-242/app"}, Action: "pull"}
	for _, bc := range []struct {
		name  string
		authz tokenauth.Authorizer
	}{
		{"token-only(distribution)", nil},
		{"token+rbac-recheck(pullgate)", authz},
	} {
		b.Run(bc.name, func(b *testing.B) {
			options := map[string]any{"realm": "/token", "service": "svc", "issuer": "iss", "jwks": jwks, "signingalgorithms": []any{"ES256"}}
			if bc.authz != nil {
				options[accessOptionAuthz] = bc.authz
			}
			ac, err := auth.GetAccessController(AccessControllerName, options)
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "http://localhost/v2/ns-242/app/manifests/v1", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := ac.Authorized(req, access); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
