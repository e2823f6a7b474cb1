package location

import (
	"context"
	"net/url"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// The integrated registry is known by any of its names, in any case, and under an
// alias that resolves to one of its addresses on the same port — never on another
// port, never another registry.
func TestHosts(t *testing.T) {
	h := Hosts{"localhost:5000", "registry.example:5000"}
	for ref, want := range map[string]bool{
		"localhost:5000/b/app:v1":   true,
		"LOCALHOST:5000/b/app":      true,
		"registry.example:5000/b/a": true,
		"localhost:5001/b/app":      false,
		"quay.io/b/app":             false,
		"docker.io/library/busybox": false,
	} {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Holds(r); got != want {
			t.Errorf("Holds(%s) = %v, want %v", ref, got, want)
		}
	}
	ctx := context.Background()
	for realm, want := range map[string]bool{
		"http://localhost:5000/openshift/token": true,
		"http://127.0.0.1:5000/openshift/token": true, // localhost's address
		"http://127.0.0.1:5001/openshift/token": false,
		"https://auth.example/token":            false,
	} {
		u, _ := url.Parse(realm)
		if got := h.Names(ctx, u); got != want {
			t.Errorf("Names(%s) = %v, want %v", realm, got, want)
		}
	}
}
