package services

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
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
	if c := WithRateLimits(&rest.Config{}); c.QPS != 1000 || c.Burst != 2000 {
		t.Errorf("defaults: %v/%v", c.QPS, c.Burst)
	}
	if c := WithRateLimits(&rest.Config{QPS: 5, Burst: 10}); c.QPS != 5 {
		t.Errorf("a configured QPS was changed: %v", c.QPS)
	}
}
