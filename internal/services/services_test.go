package services

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/component-helpers/auth/rbac/validation"

	"pullgate.dev/pullgate/internal/pki"
)

// The token key and HTTP secret are made once and read back the same after a
// restart; the registry's key set holds the signing key.
func TestKeysSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Open(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := loadKeys(ca, filepath.Join(dir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := loadKeys(ca, filepath.Join(dir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	if first.httpSecret != again.httpSecret || string(first.signer.JWKS()) != string(again.signer.JWKS()) {
		t.Error("a restart made new keys")
	}
	data, err := os.ReadFile(first.jwksFile)
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(data, &set); err != nil || len(set.Keys) != 1 || set.Keys[0]["d"] != nil {
		t.Errorf("jwks.json %s: %v (one public key wanted)", data, err)
	}
	if info, _ := os.Stat(filepath.Join(dir, "registry", "http-secret")); info.Mode().Perm() != 0o600 {
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
	} {
		if ok, _ := validation.Covers(rules, []rbacv1.PolicyRule{want}); !ok {
			t.Errorf("the services' role lacks %v", want)
		}
	}
	for _, not := range []rbacv1.PolicyRule{
		{Verbs: []string{"create"}, APIGroups: []string{""}, Resources: []string{"pods"}},
		{Verbs: []string{"delete"}, APIGroups: []string{""}, Resources: []string{"namespaces"}},
		{Verbs: []string{"update"}, APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings"}},
	} {
		if ok, _ := validation.Covers(rules, []rbacv1.PolicyRule{not}); ok {
			t.Errorf("the services' role allows %v", not)
		}
	}
}
