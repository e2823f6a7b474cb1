package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/auth/token"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

func newSigner(t testing.TB) *tokenauth.Signer {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := tokenauth.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenVerification(t *testing.T) {
	signer, other := newSigner(t), newSigner(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, signer.JWKS(), 0o644); err != nil {
		t.Fatal(err)
	}
	ac, err := auth.GetAccessController(AccessControllerName, map[string]any{
		"realm": "/token", "service": "svc", "issuer": "iss", "jwks": jwks, "signingalgorithms": []any{"ES256", "EdDSA"},
	})
	if err != nil {
		t.Fatal(err)
	}
	pull := []*token.ResourceActions{{Type: "repository", Name: "ns/app", Actions: []string{"pull"}}}
	now := time.Now()
	sign := func(s *tokenauth.Signer, iss, aud string, at time.Time) string {
		tok, err := s.Sign(tokenauth.Token{Issuer: iss, Subject: "u", Audience: aud, Access: pull, IssuedAt: at, Lifetime: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := sign(signer, "iss", "svc", now)
	parts := strings.Split(valid, ".")
	algNone := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."

	tests := []struct {
		name, token, wantError string
		action                 string
	}{
		{"valid", valid, "", "pull"},
		{"no token", "", "", "pull"},
		{"insufficient scope", valid, "insufficient_scope", "push"},
		{"signed by another key", sign(other, "iss", "svc", now), "invalid_token", "pull"},
		{"alg none", algNone, "invalid_token", "pull"},
		{"expired", sign(signer, "iss", "svc", now.Add(-time.Hour)), "invalid_token", "pull"},
		{"wrong audience", sign(signer, "iss", "other-registry", now), "invalid_token", "pull"},
		{"wrong issuer", sign(signer, "someone-else", "svc", now), "invalid_token", "pull"},
		{"garbage", "not.a.jwt", "invalid_token", "pull"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://localhost:5000/v2/ns/app/manifests/v1", nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			grant, err := ac.Authorized(req, auth.Access{Resource: auth.Resource{Type: "repository", Name: "ns/app"}, Action: tt.action})
			if tt.name == "valid" {
				if err != nil || grant.User.Name != "u" {
					t.Fatalf("valid token refused: %v", err)
				}
				return
			}
			ch, ok := err.(auth.Challenge)
			if !ok {
				t.Fatalf("got %v, want a challenge", err)
			}
			rec := httptest.NewRecorder()
			ch.SetHeaders(req, rec)
			header := rec.Header().Get("WWW-Authenticate")
			want := `Bearer realm="http://localhost:5000/token",service="svc",scope="repository:ns/app:` + tt.action + `"`
			if !strings.HasPrefix(header, want) {
				t.Errorf("challenge %q, want prefix %q", header, want)
			}
			if tt.wantError != "" && !strings.Contains(header, `error="`+tt.wantError+`"`) {
				t.Errorf("challenge %q lacks error=%q", header, tt.wantError)
			}
		})
	}
}
