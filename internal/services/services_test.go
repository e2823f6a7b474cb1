package services

import (
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// A standalone registry's HTTP secret is made once and read back the same.
func TestHTTPSecretSurvivesRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "http-secret")
	first, err := HTTPSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := HTTPSecret(path)
	if err != nil || again != first || len(first) != 64 {
		t.Errorf("a restart made a new secret (%v)", err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("http-secret mode %v", info.Mode().Perm())
	}
}

func TestRateLimitsAreRaisedOnlyWhenUnset(t *testing.T) {
	if c := withRateLimits(&rest.Config{}); c.QPS != 1000 || c.Burst != 2000 {
		t.Errorf("defaults: %v/%v", c.QPS, c.Burst)
	}
	if c := withRateLimits(&rest.Config{QPS: 5, Burst: 10}); c.QPS != 5 {
		t.Errorf("a configured QPS was changed: %v", c.QPS)
	}
}

// The services' role lets them do what they do, and no more than the few writes
// they need.
func TestServicesRole(t *testing.T) {
	rules := ClusterRole().Rules
	for _, want := range []rbacv1.PolicyRule{
		{Verbs: []string{"create"}, APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}},
		{Verbs: []string{"create"}, APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}},
		{Verbs: []string{"update"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/status"}},
		{Verbs: []string{"update"}, APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"pullgate-controllers"}},
	} {
		if ok, _ := validation.Covers(rules, []rbacv1.PolicyRule{want}); !ok {
			t.Errorf("the services' role lacks %v", want)
		}
	}
	for _, not := range []rbacv1.PolicyRule{
		{Verbs: []string{"create"}, APIGroups: []string{""}, Resources: []string{"pods"}},
		{Verbs: []string{"delete"}, APIGroups: []string{""}, Resources: []string{"namespaces"}},
		{Verbs: []string{"update"}, APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings"}},
		{Verbs: []string{"update"}, APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"kube-controller-manager"}},
	} {
		if ok, _ := validation.Covers(rules, []rbacv1.PolicyRule{not}); ok {
			t.Errorf("the services' role allows %v", not)
		}
	}
}
