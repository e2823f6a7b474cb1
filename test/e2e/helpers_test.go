package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// createNamespace makes a namespace with a generated name and deletes it after the test.
func createNamespace(t *testing.T, ctx context.Context, prefix string) string {
	t.Helper()
	ns, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

func waitForServiceAccount(t *testing.T, ctx context.Context, ns, name string) {
	t.Helper()
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err := env.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil
	}) {
		t.Fatalf("service account %s/%s was not created", ns, name)
	}
}

func runTar(ctx context.Context, out, dir string, files ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "tar", append([]string{"-C", dir, "-cf", out}, files...)...).CombinedOutput()
}
