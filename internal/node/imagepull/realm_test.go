package imagepull

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-containerregistry/pkg/name"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

// challenging is a registry whose every answer is a 401 naming realm, with a scope
// wider than anything a pull needs.
func challenging(t *testing.T, realm string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch := fmt.Sprintf(`Bearer realm=%q,service="svc",scope="repository:other/ns:pull,push"`, realm)
		if r.Header.Get("Authorization") != "" {
			ch += `,error="insufficient_scope"`
		}
		w.Header().Set("WWW-Authenticate", ch)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// recordingRealm is a token service that issues a token to anyone and records the
// user and scopes of every request.
type recordingRealm struct {
	url  string
	mu   sync.Mutex
	seen []string // "user scope…"
}

func newRecordingRealm(t *testing.T) *recordingRealm {
	t.Helper()
	rr := &recordingRealm{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		rr.mu.Lock()
		rr.seen = append(rr.seen, user+" "+strings.Join(r.URL.Query()["scope"], " "))
		rr.mu.Unlock()
		_, _ = w.Write([]byte(`{"token":"t"}`))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	rr.url = "http://localhost:" + u.Port() + "/token" // a name: clients refuse loopback IPs as realms
	return rr
}

func (rr *recordingRealm) requests() []string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]string(nil), rr.seen...)
}

func TestRealmCredentialsFollowTheSeedsRule(t *testing.T) {
	realmCred := credentials.Candidate{Description: "sso", AuthConfig: authConfig("sso-user", "x")}
	imageCred := credentials.Candidate{Description: "registry", AuthConfig: authConfig("registry-user", "y")}
	tests := []struct {
		name        string
		held        []credentials.Candidate
		wantUsers   []string // the users the token service sees, in order
		realmOnHTTP bool
	}{
		{"realm and image credentials", []credentials.Candidate{imageCred}, []string{"sso-user", "registry-user"}, false},
		{"no image credential: realm credentials withheld", nil, []string{""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			realm := newRecordingRealm(t)
			image := challenging(t, realm.url) + "/team/app:1"
			p := newPuller(t)
			_, err := p.Pull(context.Background(), Request{Image: mustImage(t, image), Credentials: tt.held,
				RealmCredentials: func(string) []credentials.Candidate { return []credentials.Candidate{realmCred} }})
			if err == nil {
				t.Fatal("a registry that refuses everything was pulled from")
			}
			if says := "needs pull secrets for both"; (len(tt.held) == 0) != strings.Contains(err.Error(), says) {
				t.Errorf("error %q: saying %q is wrong here", err, says)
			}
			got := realm.requests()
			var users []string
			for _, r := range got {
				user, scope, _ := strings.Cut(r, " ")
				users = append(users, user)
				if scope != "repository:team/app:pull" {
					t.Errorf("token requested for %q, want only repository:team/app:pull", scope)
				}
			}
			if strings.Join(users, ",") != strings.Join(tt.wantUsers, ",") {
				t.Errorf("token service saw users %q, want %q", users, tt.wantUsers)
			}
		})
	}
}

func TestForeignRegistryNamingTheIntegratedRealmIsRefused(t *testing.T) {
	realm := newRecordingRealm(t)
	image := challenging(t, realm.url) + "/b/secret:latest"
	p := newPuller(t)
	u, _ := url.Parse(realm.url)
	p.IntegratedHosts = []string{u.Host}
	_, err := p.Pull(context.Background(), Request{Image: mustImage(t, image),
		Credentials: []credentials.Candidate{{Description: "sa", AuthConfig: authConfig("serviceaccount", "token")}},
		RealmCredentials: func(string) []credentials.Candidate {
			return []credentials.Candidate{{Description: "dockercfg", AuthConfig: authConfig("x", "y")}}
		}})
	var perr *Error
	if !errors.As(err, &perr) || perr.Reason != ReasonForeignRealm {
		t.Fatalf("got %v, want %s", err, ReasonForeignRealm)
	}
	if got := realm.requests(); len(got) > 0 {
		t.Errorf("the integrated token service was asked for %d tokens for a foreign image", len(got))
	}
}

func TestSecureRealm(t *testing.T) {
	for raw, want := range map[string]bool{
		"https://sso.example.com/token":    true,
		"http://sso.example.com/token":     false,
		"http://localhost:8080/token":      true,
		"http://127.0.0.1:8080/token":      true,
		"http://[::1]:8080/token":          true,
		"http://10.0.0.1/token":            false,
		"http://localhost.example.com/tok": false,
	} {
		u, _ := url.Parse(raw)
		if got := secureRealm(u); got != want {
			t.Errorf("secureRealm(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestPlanSkipsRealmCredentialsOverPlainHTTPOffLoopback(t *testing.T) {
	reg := challenging(t, "http://sso.example.com/token")
	ref, _ := name.ParseReference(reg + "/team/app:1")
	p := newPuller(t)
	pl, err := p.plan(context.Background(), ref, Request{
		Credentials: []credentials.Candidate{{Description: "registry", AuthConfig: authConfig("u", "p")}},
		RealmCredentials: func(string) []credentials.Candidate {
			return []credentials.Candidate{{Description: "sso", AuthConfig: authConfig("s", "p")}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pl.tokenHost != "sso.example.com" || len(pl.attempts) != 1 || pl.attempts[0].sent.Description != "registry" {
		t.Errorf("attempts %+v (token host %q), want only the registry's credential", pl.attempts, pl.tokenHost)
	}
	if !strings.Contains(pl.withheld, "plain HTTP") {
		t.Errorf("withheld %q does not say why", pl.withheld)
	}
}

// The integrated registry's token service spelled another way — its address for its
// name — is still recognized, and not asked.
func TestIntegratedRealmUnderAnotherNameIsRefused(t *testing.T) {
	realm := newRecordingRealm(t) // http://localhost:PORT/token
	image := challenging(t, realm.url) + "/b/secret:latest"
	p := newPuller(t)
	u, _ := url.Parse(realm.url)
	p.IntegratedHosts = []string{"127.0.0.1:" + u.Port()}
	_, err := p.Pull(context.Background(), Request{Image: mustImage(t, image)})
	if foreignRealm(err) == nil {
		t.Fatalf("got %v, want %s", err, ReasonForeignRealm)
	}
	if got := realm.requests(); len(got) > 0 {
		t.Errorf("the integrated token service, under another name, was asked for %d tokens", len(got))
	}
}

// Whatever name a realm goes by, a token pullgate's token service signed is never
// sent to another registry.
func TestPullgateTokensAreNeverSentToAnotherRegistry(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: tokenauth.Issuer, Subject: "system:anonymous"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"token":%q}`, tok)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	var sent []string
	var mu sync.Mutex
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			mu.Lock()
			sent = append(sent, a)
			mu.Unlock()
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://localhost:%s/token",service="pullgate-registry"`, u.Port()))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(reg.Close)
	p := newPuller(t)
	p.IntegratedHosts = []string{"registry.example.com:5000"} // no name of it matches
	_, err = p.Pull(context.Background(), Request{Image: mustImage(t, strings.TrimPrefix(reg.URL, "http://")+"/b/secret:latest")})
	if foreignRealm(err) == nil {
		t.Fatalf("got %v, want %s", err, ReasonForeignRealm)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) > 0 {
		t.Errorf("the registry was sent %d authorizations, e.g. %.30s…", len(sent), sent[0])
	}
}
