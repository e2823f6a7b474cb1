package tokenserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// fakeAuthn knows one token (a unit-test fake for TokenReview).
type fakeAuthn struct{}

func (fakeAuthn) Authenticate(_ context.Context, token string) (rbacauthz.User, error) {
	if token == "good" {
		return rbacauthz.User{Name: "system:serviceaccount:project-a:default", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:project-a"}}, nil
	}
	return rbacauthz.User{}, ErrUnauthenticated
}

// fakeAuthz allows pull in project-b and push nowhere (a unit-test fake for RBAC).
type fakeAuthz struct{}

func (fakeAuthz) Allowed(user rbacauthz.User, req rbacauthz.Request) (bool, string) {
	return user.Name != "system:anonymous" && req.Namespace == "project-b" && req.Verb == "get" && req.Subresource == "layers", "test"
}

func newTestServer(t *testing.T) *Server {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := tokenauth.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Issuer: "iss", Service: "svc", Signer: signer, Authn: fakeAuthn{}, Authz: fakeAuthz{},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func get(t *testing.T, s *Server, query url.Values, password string) (*http.Response, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/token?"+query.Encode(), nil)
	if password != "" {
		req.SetBasicAuth("anything", password)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Result(), body
}

func accessOf(t *testing.T, body map[string]any) string {
	t.Helper()
	parts := strings.Split(body["token"].(string), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Access []struct {
			Type, Name string
			Actions    []string
		}
		Groups []string
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range claims.Access {
		out = append(out, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	return strings.Join(out, " ")
}

func TestEachActionIsDecidedOnItsOwn(t *testing.T) {
	s := newTestServer(t)
	resp, body := get(t, s, url.Values{"service": {"svc"}, "scope": {"repository:project-b/app:pull,push", "repository:project-c/app:pull"}}, "good")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %v", resp.StatusCode, body)
	}
	if got := accessOf(t, body); got != "repository:project-b/app:pull" {
		t.Errorf("granted %q, want pull on project-b/app only", got)
	}
	if body["expires_in"].(float64) > tokenauth.MaxLifetime.Seconds() || body["access_token"] != body["token"] {
		t.Errorf("response %v", body)
	}
}

func TestAnonymousAndBadCredentials(t *testing.T) {
	s := newTestServer(t)
	resp, body := get(t, s, url.Values{"scope": {"repository:project-b/app:pull"}}, "")
	if resp.StatusCode != http.StatusOK || accessOf(t, body) != "" {
		t.Errorf("anonymous: %d, access %q", resp.StatusCode, accessOf(t, body))
	}
	resp, body = get(t, s, url.Values{"scope": {"repository:project-b/app:pull"}}, "forged")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(errorCode(body), "UNAUTHORIZED") {
		t.Errorf("bad token: %d %v", resp.StatusCode, body)
	}
	if strings.Contains(errorMessage(body), "forged") {
		t.Error("the error repeats the credential")
	}
}

func TestBadRequests(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		query url.Values
		code  string
	}{
		{url.Values{"scope": {"repository:project-b/app:fly"}}, "UNSUPPORTED"},
		{url.Values{"scope": {"repository:Project-B/App:pull"}}, "NAME_INVALID"},
		{url.Values{"scope": {"nonsense"}}, "UNSUPPORTED"},
		{url.Values{"service": {"other"}}, "UNSUPPORTED"},
	}
	for _, tt := range tests {
		resp, body := get(t, s, tt.query, "good")
		if resp.StatusCode != http.StatusBadRequest || errorCode(body) != tt.code {
			t.Errorf("%v: %d %v, want 400 %s", tt.query, resp.StatusCode, body, tt.code)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/token", nil)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func errorCode(body map[string]any) string {
	errs, _ := body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	return errs[0].(map[string]any)["code"].(string)
}

func errorMessage(body map[string]any) string {
	errs, _ := body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	return errs[0].(map[string]any)["message"].(string)
}
