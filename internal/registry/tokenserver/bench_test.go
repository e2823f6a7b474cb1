package tokenserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/rbacauthz/rbacauthztest"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Token issue with 10,000 RoleBindings in the cluster, the informer-fed authorizer
// and cached token reviews: the goal is ≥ 5,000 tokens/s per core and no API round
// trip per request in steady state (reported as api-calls/op).
func BenchmarkIssueToken10000Bindings(b *testing.B) {
	objs := rbacauthztest.PullerBindings(10000)
	client := fake.NewClientset(objs...)
	var apiCalls atomic.Int64
	client.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		apiCalls.Add(1)
		return true, &authenticationv1.TokenReview{Status: authenticationv1.TokenReviewStatus{
			Authenticated: true,
			User:          authenticationv1.UserInfo{Username: "system:serviceaccount:clients:sa-4242", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:clients"}},
		}}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	authz, err := rbacauthz.NewForClient(ctx, client)
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := tokenauth.NewSigner(key)
	s := &Server{Issuer: "iss", Service: "svc", Signer: signer, Authz: authz,
		Authn: NewTokenReviewer(client, time.Minute, "", nil), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	req := httptest.NewRequest(http.MethodGet, "/token?service=svc&scope=repository:ns-242/app:pull,push", nil)
	req.SetBasicAuth("x", "a-kubernetes-token")
	warm := httptest.NewRecorder()
	s.ServeHTTP(warm, req)
	if warm.Code != http.StatusOK {
		b.Fatalf("status %d", warm.Code)
	}
	apiCalls.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req.Clone(req.Context()))
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
	b.ReportMetric(float64(apiCalls.Load())/float64(b.N), "api-calls/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
