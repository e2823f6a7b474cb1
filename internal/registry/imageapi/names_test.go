package imageapi

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestStreamNamesAreDistinct(t *testing.T) {
	// Paths that read alike do not share a stream.
	seen := map[string]string{}
	nested := StreamName("charts/app")
	for _, p := range []string{"charts/app", nested, StreamName(nested), "1a2b3c4d", "a/b", "a-b", "a_b", "a.b/c", "a/b.c", "charts/mychart", "charts-mychart", strings.Repeat("x/", 200) + "y", strings.Repeat("x/", 200) + "z"} {
		s := StreamName(p)
		if other, dup := seen[s]; dup {
			t.Errorf("%q and %q share stream %q", p, other, s)
		}
		seen[s] = p
		if len(s) > 253 {
			t.Errorf("stream of %q is %d characters long", p, len(s))
		}
	}
}

// The repository annotation is believed only for the stream that path names: one
// written to claim another namespace's repository, or another stream's, is not.
func TestRepositoryAnnotationIsNotTakenOnItsWord(t *testing.T) {
	stream := func(ns, name, annotation string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetNamespace(ns)
		u.SetName(name)
		if annotation != "" {
			u.SetAnnotations(map[string]string{AnnotationRepository: annotation})
		}
		return u
	}
	nested := StreamName("charts/app")
	for _, c := range []struct {
		obj  *unstructured.Unstructured
		want string
	}{
		{stream("team", "app", ""), "team/app"},
		{stream("team", nested, "team/charts/app"), "team/charts/app"},
		{stream("team", "app", "victim/app"), "team/app"},
		{stream("team", "app", "team/charts/app"), "team/app"},
		{stream("team", nested, "victim/charts/app"), "team/" + nested},
	} {
		if got := Repository(c.obj); got != c.want {
			t.Errorf("Repository(%s/%s annotated %q) = %q, want %q", c.obj.GetNamespace(), c.obj.GetName(), c.obj.GetAnnotations()[AnnotationRepository], got, c.want)
		}
	}
}
