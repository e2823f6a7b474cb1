package tokenauth

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSplitRepository(t *testing.T) {
	tests := []struct {
		repo, namespace, stream string
		ok                      bool
	}{
		{"team/app", "team", "app", true},
		{"team/web.v2", "team", "web.v2", true},
		{"team/charts/mychart", "team", "charts-mychart-", true},
		{"team/synced/app", "team", "synced-app-", true},
		{"team/my_app", "team", "my-app-", true},
		{"team/a__b", "team", "a-b-", true},
		{"lonely", "", "", false},
		{"/app", "", "", false},
	}
	for _, tt := range tests {
		ns, stream, ok := SplitRepository(tt.repo)
		if ns != tt.namespace || ok != tt.ok || !strings.HasPrefix(stream, tt.stream) || (tt.stream == "" && stream != "") {
			t.Errorf("SplitRepository(%q) = %q, %q, %v; want %q, %q…, %v", tt.repo, ns, stream, ok, tt.namespace, tt.stream, tt.ok)
		}
		if ok {
			if errs := validation.IsDNS1123Subdomain(stream); len(errs) > 0 {
				t.Errorf("stream %q of %q is not a Kubernetes name: %v", stream, tt.repo, errs)
			}
		}
	}
}
