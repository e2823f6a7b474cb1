// Package conformance runs the OCI distribution-spec conformance suite (v1.1) against
// the integrated registry of a real `pullgate up`, with auth on: the password is a
// project admin's service-account token.
package conformance

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{}))
}

type results struct {
	APIs map[string]string `json:"apis"`
	Data map[string]string `json:"data"`
}

func TestOCIConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	suite, err := harness.Tool("conformance")
	if err != nil {
		t.Fatal(err)
	}
	token := projectAdminToken(t, ctx, "conformance")

	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, suite)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+env.RegistryHost,
		"OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_USERNAME=anything",
		"OCI_PASSWORD="+token,
		"OCI_VERSION=1.1",
		// distribution stores sha256 only; sha512 is listed as unsupported in the README.
		"OCI_DATA_SHA512=false",
	)
	out, runErr := cmd.CombinedOutput()

	// A configuration error exits 0: the results file is the verdict.
	data, err := os.ReadFile(filepath.Join(dir, "results", "results.yaml"))
	if err != nil {
		t.Fatalf("no results.yaml (%v); suite exit: %v\n%s", err, runErr, out)
	}
	var res results
	if err := yaml.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.APIs) == 0 || len(res.Data) == 0 {
		t.Fatalf("results.yaml lists no tests:\n%s", data)
	}
	for _, section := range []map[string]string{res.APIs, res.Data} {
		for name, verdict := range section {
			if verdict == "FAIL" {
				t.Errorf("%s: FAIL", name)
			}
		}
	}
	for _, must := range []string{"Referrers", "Manifest put with subject", "Blob mount", "Tag listing", "Manifest delete"} {
		if res.APIs[must] != "Pass" {
			t.Errorf("%s: %q, want Pass", must, res.APIs[must])
		}
	}
	if t.Failed() {
		t.Logf("suite output:\n%s", tail(string(out), 60))
	}
}

// projectAdminToken makes namespace ns and a service account bound to admin in it.
func projectAdminToken(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	if _, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := env.Account(ctx, ns, "project-admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	// The admin role reaches the token service through the aggregation controller and
	// informers; wait until a push is granted.
	cfg, err := env.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		out, err := harness.Crane(ctx, cfg, "auth", "token", "--push", env.RegistryHost+"/"+ns+"/probe")
		return err == nil && slices.Contains(grantedActions(t, out), "push")
	}) {
		t.Fatal("the project admin is not granted push")
	}
	return token
}

// grantedActions decodes the actions a registry token (crane auth token's JSON) grants.
func grantedActions(t *testing.T, craneOut string) []string {
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(craneOut), &resp); err != nil {
		return nil
	}
	parts := strings.Split(resp.Token, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims struct {
		Access []struct {
			Actions []string `json:"actions"`
		} `json:"access"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range claims.Access {
		out = append(out, a.Actions...)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
