package tokenserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeReviews answers TokenReviews as an API server whose own audience is "api":
// signed tokens are valid for their "aud", anything else is not, and every review
// is counted.
type fakeReviews struct {
	mu        sync.Mutex
	audiences [][]string
}

func (f *fakeReviews) client() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		review := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		f.mu.Lock()
		f.audiences = append(f.audiences, review.Spec.Audiences)
		f.mu.Unlock()
		want := review.Spec.Audiences
		if len(want) == 0 {
			want = []string{"api"}
		}
		tokenAud := ""
		if parsed, err := jwt.ParseSigned(review.Spec.Token, jwtAlgorithms); err == nil {
			var c jwt.Claims
			_ = parsed.UnsafeClaimsWithoutVerification(&c)
			tokenAud = c.Audience[0]
		}
		review.Status.Authenticated = slices.Contains(want, tokenAud)
		review.Status.User.Username = "u"
		return true, review, nil
	})
	return c
}

func (f *fakeReviews) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.audiences)
}

func signedFor(t *testing.T, audience string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Audience: jwt.Audience{audience}, Subject: "s", ID: rand.Text(), Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Each distinct token costs one review, for the audience it names; answers, good or
// bad, are cached; concurrent requests with one token share one review.
func TestOneReviewPerDistinctToken(t *testing.T) {
	f := &fakeReviews{}
	r := NewTokenReviewer(f.client(), time.Minute, "pullgate-registry", nil)
	ctx := context.Background()
	for _, tc := range []struct {
		token     string
		audiences []string
		ok        bool
	}{
		{signedFor(t, "api"), nil, true},
		{signedFor(t, "pullgate-registry"), []string{"pullgate-registry"}, true},
		{"bad", nil, false},
	} {
		before := f.count()
		var wg sync.WaitGroup
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := r.Authenticate(ctx, tc.token)
				if (err == nil) != tc.ok {
					t.Errorf("token for %v: err %v", tc.audiences, err)
				}
			}()
		}
		wg.Wait()
		_, _ = r.Authenticate(ctx, tc.token)
		if got := f.count() - before; got != 1 {
			t.Errorf("token for %v: %d reviews, want 1", tc.audiences, got)
		}
		if got := f.audiences[len(f.audiences)-1]; !slices.Equal(got, tc.audiences) {
			t.Errorf("reviewed for audiences %v, want %v", got, tc.audiences)
		}
		if r.KnownGood(tc.token) != tc.ok {
			t.Errorf("KnownGood = %v, want %v", !tc.ok, tc.ok)
		}
	}
}

// An address that keeps failing is answered 429 before any review; a client known
// good is not; the address recovers at the configured rate.
func TestFailedLoginsAreRateLimited(t *testing.T) {
	f := &fakeReviews{}
	s := newTestServer(t)
	reviewer := NewTokenReviewer(f.client(), time.Minute, "", nil)
	s.Authn = reviewer
	s.Limiter = &FailureLimiter{Rate: 1000, Burst: 3}
	good := signedFor(t, "api")
	do := func(password, addr string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, "/token?"+url.Values{"scope": {"repository:project-b/app:pull"}}.Encode(), nil)
		req.RemoteAddr = addr
		req.SetBasicAuth("u", password)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Result()
	}
	if resp := do(good, "10.0.0.1:1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("good login: %s", resp.Status)
	}
	// No recovery during the test, and no review budget for limited addresses.
	s.Limiter = &FailureLimiter{Rate: 0.001, Burst: 3, ReviewRate: 0.001, ReviewBurst: 0}
	for i := range 3 {
		if resp := do("bad-"+string(rune('a'+i)), "10.0.0.1:2"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %s, want 401", i, resp.Status)
		}
	}
	reviews := f.count()
	resp := do("bad-d", "10.0.0.1:3")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth failure: %s (Retry-After %q), want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	if f.count() != reviews {
		t.Error("a rate-limited request was reviewed")
	}
	if resp := do(good, "10.0.0.1:4"); resp.StatusCode != http.StatusOK {
		t.Errorf("a known-good client from a limited address: %s", resp.Status)
	}
	if resp := do("bad-e", "10.0.0.2:1"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another address: %s, want 401", resp.Status)
	}
}

// A flood of bad logins from one address (a NAT, a node) does not lock out a good
// client there: a fresh, well-formed token is still reviewed and accepted while the
// review budget lasts; garbage is not; and one credential that keeps failing is
// limited whatever address it comes from.
func TestGoodClientsAreNotLockedOutByOthersFailures(t *testing.T) {
	f := &fakeReviews{}
	s := newTestServer(t)
	s.Authn = NewTokenReviewer(f.client(), time.Minute, "", nil)
	s.Limiter = &FailureLimiter{Rate: 0.001, Burst: 3, ReviewRate: 0.001, ReviewBurst: 2}
	do := func(password, addr string) int {
		req := httptest.NewRequest(http.MethodGet, "/token?"+url.Values{"scope": {"repository:project-b/app:pull"}}.Encode(), nil)
		req.RemoteAddr = addr
		req.SetBasicAuth("u", password)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	for i := range 10 {
		_ = do("garbage-"+strconv.Itoa(i), "10.0.0.1:1")
	}
	if code := do("garbage-new", "10.0.0.1:1"); code != http.StatusTooManyRequests {
		t.Fatalf("the flooding address: %d, want 429", code)
	}
	for i := range 2 {
		if code := do(signedFor(t, "api"), "10.0.0.1:2"); code != http.StatusOK {
			t.Errorf("good client %d with a fresh token, behind the flooding address: %d, want 200", i, code)
		}
	}
	if code := do(signedFor(t, "api"), "10.0.0.1:2"); code != http.StatusTooManyRequests {
		t.Errorf("a third fresh token once the review budget is spent: %d, want 429", code)
	}
	bad := signedFor(t, "elsewhere")
	for i := range 3 {
		if code := do(bad, "10.0.1."+strconv.Itoa(i)+":1"); code != http.StatusUnauthorized {
			t.Fatalf("a bad token's failure %d: %d, want 401", i, code)
		}
	}
	reviews := f.count()
	if code := do(bad, "10.0.2.1:1"); code != http.StatusTooManyRequests {
		t.Errorf("a credential that failed 3 times, from a new address: %d, want 429", code)
	}
	if f.count() != reviews {
		t.Error("a limited credential was reviewed")
	}
}

func TestUnreachableAPIIsNotCached(t *testing.T) {
	c := fake.NewClientset()
	calls := 0
	c.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		return true, nil, errors.New("connection refused")
	})
	r := NewTokenReviewer(c, time.Minute, "", nil)
	for range 2 {
		if _, err := r.Authenticate(context.Background(), "t"); err == nil || errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("got %v, want an API error", err)
		}
	}
	if calls != 2 {
		t.Errorf("%d reviews, want 2: an API error must not be cached", calls)
	}
}
