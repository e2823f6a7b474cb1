package realnode

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// On the real kubelet, a pod runs an image imported with --reference-policy=local
// from an htpasswd registry: containerd pulls it from the integrated registry with
// the pod's pull secret, and the integrated registry read it at the source with the
// project's secret (main-user, per the source's log) — a credential no node holds.
func TestPullThroughOnTheRealKubelet(t *testing.T) {
	needRealNode(t)
	e := kubeletEnv
	ctx := harness.Context(t, 3*time.Minute)
	// The source, certified by this up's CA (which its registry trusts); the node
	// never reaches it.
	source, err := harness.StartSeedRegistries(filepath.Join(e.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(source.Stop)
	developer, err := harness.BasicDockerConfig(t.TempDir(), map[string][2]string{source.Private: {"developer", harness.PrivateUsers["developer"]}})
	if err != nil {
		t.Fatal(err)
	}
	from := source.Private + "/imported/app:v1"
	pushRunnable(t, ctx, developer, from, source.CAEnv)

	ns := newProject(t, ctx, e, "pullthrough")
	data, err := harness.DockerConfigJSON(map[string][2]string{source.Private: {"main-user", harness.PrivateUsers["main-user"]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "source"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := harness.Run(ctx, harness.RunOptions{Env: []string{"KUBECONFIG=" + e.Kubeconfig}},
		"import-image", "app:v1", "--from="+from, "--confirm", "--reference-policy=local", "-n", ns)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("import-image: %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	out, err := harness.CraneEnv(ctx, developer, []string{source.CAEnv}, "digest", from)
	if err != nil {
		t.Fatalf("crane digest %s: %v: %s", from, err, out)
	}
	digest := strings.TrimSpace(out)
	got, msg := outcome(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", e.RegistryHost+"/"+ns+"/app:v1"))
	if got != pulled {
		t.Fatalf("the real node did not pull the imported image through the registry: %s", msg)
	}
	if by := source.Pullers("imported/app", digest); len(by) == 0 || by[len(by)-1] != "main-user" {
		t.Errorf("the source was read as %q, want main-user (the project's secret)", by)
	}
}
