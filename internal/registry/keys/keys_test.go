package keys

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

func jwksIDs(t *testing.T, data []byte) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("the JWKS holds a private key: %s", k.KeyID)
		}
		ids = append(ids, k.KeyID)
	}
	return ids
}

// A rotation's new key verifies at once, signs only after the propagation delay, and
// the old key verifies until the longest token it signed has expired.
func TestRotationOverlap(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	set, err := New(t0)
	if err != nil {
		t.Fatal(err)
	}
	old := set.Keys[0].ID
	rotated, err := set.Rotate(t0.Add(time.Hour), Propagation)
	if err != nil {
		t.Fatal(err)
	}
	next := rotated.Keys[1].ID
	at := func(d time.Duration) time.Time { return t0.Add(time.Hour + d) }

	if got := rotated.Signing(at(0)).ID; got != old {
		t.Errorf("right after the rotation %s signs, want the old key %s", got, old)
	}
	if got := jwksIDs(t, rotated.JWKS(at(0))); len(got) != 2 {
		t.Errorf("right after the rotation the JWKS holds %v, want both keys", got)
	}
	if got := rotated.Signing(at(Propagation)).ID; got != next {
		t.Errorf("after the propagation delay %s signs, want the new key %s", got, next)
	}
	// The last token of the old key was signed just before Propagation and lives
	// tokenauth.MaxLifetime: it must still verify then.
	if got := jwksIDs(t, rotated.JWKS(at(Propagation+Overlap))); len(got) != 2 {
		t.Errorf("at the end of the overlap the JWKS holds %v, want both keys", got)
	}
	if got := jwksIDs(t, rotated.JWKS(at(Propagation+Overlap+time.Second))); len(got) != 1 || got[0] != next {
		t.Errorf("after the overlap the JWKS holds %v, want only %s", got, next)
	}
	if next := rotated.NextChange(at(0)); !next.Equal(at(Propagation)) {
		t.Errorf("next change %v, want when the new key signs", next)
	}
	// A later rotation drops keys that no longer verify.
	again, err := rotated.Rotate(at(Propagation+Overlap+time.Minute), Propagation)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Keys) != 2 || again.Keys[0].ID != next || again.HTTPSecret != set.HTTPSecret {
		t.Errorf("second rotation kept %d keys (first %s), HTTP secret kept: %v", len(again.Keys), again.Keys[0].ID, again.HTTPSecret == set.HTTPSecret)
	}
}

func TestEncodeDecode(t *testing.T) {
	set, _ := New(time.Now())
	set, _ = set.Rotate(time.Now(), Propagation)
	data, err := set.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil || !back.Equal(set) || !back.Keys[1].Private.Equal(set.Keys[1].Private) {
		t.Fatalf("decoded set differs: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(map[string][]byte)
		want string
	}{
		"short secret": {func(d map[string][]byte) { d[dataHTTPSecret] = []byte("x") }, "data[http-secret]"},
		"no keys":      {func(d map[string][]byte) { d[dataKeys] = []byte("[]") }, "data[signing-keys.json]: no key"},
		"not JSON":     {func(d map[string][]byte) { d[dataKeys] = []byte("{") }, "data[signing-keys.json]: not a JSON list"},
		"bad PEM":      {func(d map[string][]byte) { d[dataKeys] = []byte(`[{"id":"a","key":"nope"}]`) }, "data[signing-keys.json][0].key: not PEM"},
		"wrong id": {func(d map[string][]byte) {
			d[dataKeys] = []byte(strings.Replace(string(d[dataKeys]), set.Keys[0].ID, "forged", 1))
		}, "[0].id"},
		"out of order": {func(d map[string][]byte) { d[dataKeys] = swapKeys(t, d[dataKeys]) }, "oldest first"},
	} {
		t.Run(name, func(t *testing.T) {
			d, _ := set.Encode()
			tc.edit(d)
			_, err := Decode(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), set.HTTPSecret) {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
}

func swapKeys(t *testing.T, data []byte) []byte {
	var stored []storedKey
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	stored[0], stored[1] = stored[1], stored[0]
	out, _ := json.Marshal(stored)
	return out
}

// Replicas that start together end with one set of keys: the Secret is created once,
// and those that lose the race read the winner's.
func TestEnsureRacingReplicasAgree(t *testing.T) {
	client := fake.NewClientset()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sets := make([]*Set, 8)
	for i := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set, err := Ensure(context.Background(), client)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			sets[i] = set
			mu.Unlock()
		}()
	}
	wg.Wait()
	for i, s := range sets[1:] {
		if !s.Equal(sets[0]) {
			t.Fatalf("replica %d holds other keys than replica 0", i+1)
		}
	}
}

func TestEnsureNamesMissingNamespace(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, Namespace)
	})
	_, err := Ensure(context.Background(), client)
	if err == nil || !strings.Contains(err.Error(), "kubectl create namespace "+Namespace) {
		t.Fatalf("got %v, want the command that creates the namespace", err)
	}
}

// Each replica follows the Secret: a rotation made elsewhere reaches its verifier, a
// token is signed by the key that signs now, and a deleted Secret is written back.
func TestSharedFollowsTheSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	shared, err := Load(ctx, client, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	verified := make(chan *Set, 10)
	go shared.Run(ctx, func(s *Set) { verified <- s })
	first := <-verified
	if len(first.Keys) != 1 {
		t.Fatalf("first verify call has %d keys", len(first.Keys))
	}
	jwt, err := shared.Sign(tokenauth.Token{Issuer: "iss", Subject: "alice", Audience: "aud", IssuedAt: time.Now(), Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if kid := headerKeyID(t, jwt); kid != first.Keys[0].ID {
		t.Errorf("signed with %s, want %s", kid, first.Keys[0].ID)
	}

	rotated, err := Rotate(ctx, client, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, verified, func(s *Set) bool { return len(s.Keys) == 2 })
	jwt, _ = shared.Sign(tokenauth.Token{Issuer: "iss", Subject: "alice", Audience: "aud", IssuedAt: time.Now(), Lifetime: time.Minute})
	if kid := headerKeyID(t, jwt); kid != rotated.Keys[1].ID {
		t.Errorf("after a rotation with no propagation delay, signed with %s, want the new key %s", kid, rotated.Keys[1].ID)
	}

	if err := client.CoreV1().Secrets(Namespace).Delete(ctx, Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		secret, err := client.CoreV1().Secrets(Namespace).Get(ctx, Name, metav1.GetOptions{})
		if err == nil {
			back, err := Decode(secret.Data)
			if err != nil || !back.Equal(rotated) {
				t.Fatalf("written back with other keys (%v)", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted Secret was not written back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRotateWithoutKeysSaysWhy(t *testing.T) {
	_, err := Rotate(context.Background(), fake.NewClientset(), Propagation)
	if err == nil || !strings.Contains(err.Error(), "no registry has run yet") {
		t.Fatalf("got %v", err)
	}
}

func waitFor(t *testing.T, c <-chan *Set, ok func(*Set) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-c:
			if ok(s) {
				return
			}
		case <-timeout:
			t.Fatal("the replica did not see the change")
		}
	}
}

func headerKeyID(t *testing.T, jwt string) string {
	t.Helper()
	sig, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return sig.Signatures[0].Header.KeyID
}
