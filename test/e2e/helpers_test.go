package e2e

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// requireCommand skips the test, saying how to install it, when name is not installed.
func requireCommand(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: install it with sudo apt-get install -y %s (make tools does, as root or with sudo)", name, name)
	}
	return path
}

// requireRootlessPodman skips a podman test for an ordinary user whose podman cannot
// map the user IDs an image's files are owned by.
func requireRootlessPodman(t *testing.T) {
	t.Helper()
	requireCommand(t, "podman")
	if os.Geteuid() == 0 {
		return
	}
	out, err := newPodman(t).command(context.Background(), "unshare", "cat", "/proc/self/uid_map").CombinedOutput()
	ids := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			n, _ := strconv.Atoi(f[2])
			ids += n
		}
	}
	if err != nil || ids < 65536 {
		u := os.Getenv("USER")
		t.Skipf("rootless podman cannot run here for %s (%d user IDs mapped, %v): give the user subordinate IDs with sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s, and install uidmap", u, ids, err, u)
	}
}
