package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/pkg/credentials"
)

// Namespace creates a namespace named prefix-<random> and deletes it when the test ends.
func (e *Env) Namespace(t testing.TB, ctx context.Context, prefix string) string {
	t.Helper()
	ns, err := e.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Admin.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// DockerConfigFor writes a docker config.json holding cred for host in a new
// directory, and returns it (for DOCKER_CONFIG).
func DockerConfigFor(t testing.TB, host string, cred credentials.Credential) string {
	t.Helper()
	dir := t.TempDir()
	data, err := credentials.SetAuth(nil, host, cred, credentials.Docker)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WaitForImagesPulled waits until the pod's ImagesPulled condition is want.
func (e *Env) WaitForImagesPulled(t testing.TB, ctx context.Context, ns, name string, want corev1.ConditionStatus, timeout time.Duration) {
	t.Helper()
	var pod *corev1.Pod
	if !Eventually(ctx, timeout, func(ctx context.Context) bool {
		var err error
		if pod, err = e.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == "ImagesPulled" && c.Status == want {
				return true
			}
		}
		return false
	}) {
		status := corev1.PodStatus{}
		if pod != nil {
			status = pod.Status
		}
		t.Fatalf("pod %s/%s: ImagesPulled did not become %s; status %+v", ns, name, want, status)
	}
}
