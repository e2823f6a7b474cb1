package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Every service account of a new namespace — default, builder, deployer — lists one
// pull secret for the integrated registry, with an entry for each of its names, whose
// token the registry accepts.
func TestServiceAccountsGetRegistryPullSecrets(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "pull-secrets")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest := pushImage(t, ctx, dockerConfigFor(t, ctx, ns, "pusher", "admin"), image)
	port := env.RegistryHost[strings.LastIndexByte(env.RegistryHost, ':')+1:]

	for _, sa := range []string{"default", "builder", "deployer"} {
		secret := waitForPullSecret(t, ctx, ns, sa)
		cfg, err := credentials.FromSecret(secret)
		if err != nil {
			t.Fatalf("%s's pull secret: %v", sa, err)
		}
		var keys []string
		for _, e := range cfg.Entries {
			keys = append(keys, e.Key)
		}
		for _, want := range []string{"localhost:" + port, "127.0.0.1:" + port} {
			if !slices.Contains(keys, want) {
				t.Errorf("%s's pull secret has entries %v, want one for %s", sa, keys, want)
			}
		}
		if secret.Annotations[corev1.ServiceAccountNameKey] != sa || len(secret.OwnerReferences) != 1 || secret.OwnerReferences[0].Kind != "ServiceAccount" {
			t.Errorf("%s's pull secret is not annotated with and owned by its service account: %v %v", sa, secret.Annotations, secret.OwnerReferences)
		}
		waitForPull(t, ctx, dockerConfigFromSecret(t, secret), image, digest)
	}
}

// A deleted or edited pull secret is put back; the account still lists it once.
func TestPullSecretsAreRepaired(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "repair")
	first := waitForPullSecret(t, ctx, ns, "default")
	if err := env.Admin.CoreV1().Secrets(ns).Delete(ctx, first.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := waitForPullSecretWhere(t, ctx, ns, "default", func(s *corev1.Secret) bool { return s.UID != first.UID })

	edited := second.DeepCopy()
	edited.Data[corev1.DockerConfigKey] = []byte(`{"localhost:1": {"username": "someone", "password": "else"}}`)
	if _, err := env.Admin.CoreV1().Secrets(ns).Update(ctx, edited, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPullSecretWhere(t, ctx, ns, "default", func(s *corev1.Secret) bool {
		return s.Annotations["pullgate.dev/token-sha256"] != second.Annotations["pullgate.dev/token-sha256"] && !strings.Contains(string(s.Data[corev1.DockerConfigKey]), "someone")
	})
	sa, err := env.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := countRefs(sa, first.Name); n != 1 {
		t.Errorf("default lists its pull secret %d times, want once: %v", n, sa.ImagePullSecrets)
	}
}

// Deleting a service account deletes its pull secret, and the registry refuses its
// token within the token service's review cache (10 s) — well inside the registry
// token's lifetime.
func TestDeletedServiceAccountLosesRegistryAccess(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "gone")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest := pushImage(t, ctx, dockerConfigFor(t, ctx, ns, "pusher", "admin"), image)
	if _, err := env.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "leaving"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := waitForPullSecret(t, ctx, ns, "leaving")
	cfg := dockerConfigFromSecret(t, secret)
	waitForPull(t, ctx, cfg, image, digest)

	if err := env.Admin.CoreV1().ServiceAccounts(ns).Delete(ctx, "leaving", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err := harness.Crane(ctx, cfg, "digest", image)
		return err != nil
	}) {
		t.Fatal("the deleted service account's token still pulls")
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err := env.Admin.CoreV1().Secrets(ns).Get(ctx, secret.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}) {
		t.Error("the deleted service account's pull secret is still there")
	}
}

// The seed's warning — "if you create a pod before its service account is fully
// provisioned, the pod fails" — does not apply: a pod created in the same apply as
// its namespace pulls from the integrated registry, 20 times in a row, with no
// ErrImagePull.
func TestPodCreatedWithItsNamespacePulls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	shared := createNamespace(t, ctx, "shared-images")
	image := env.RegistryHost + "/" + shared + "/app:v1"
	pushImage(t, ctx, dockerConfigFor(t, ctx, shared, "pusher", "admin"), image)
	// Every service account may pull from the shared project (as from OpenShift's
	// "openshift" namespace).
	if _, err := env.Admin.RbacV1().RoleBindings(shared).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "all-service-accounts"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubectl, err := harness.KubectlBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		ns := "race-" + rand.String(6)
		t.Cleanup(func() { _ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: %s}
spec:
  containers: [{name: app, image: %s}]
`, ns, ns, image)
		file := filepath.Join(t.TempDir(), "apply.yaml")
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", env.Kubeconfig, "apply", "-f", file).CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: kubectl apply: %v\n%s", i, err, out)
		}
		pod := waitForCondition(t, ctx, ns, "app", corev1.ConditionTrue, 30*time.Second)
		events, err := env.Admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning {
				t.Errorf("run %d: pod %s/%s: %s %s", i, ns, pod.Name, e.Reason, e.Message)
			}
		}
	}
}

func countRefs(sa *corev1.ServiceAccount, name string) int {
	n := 0
	for _, r := range sa.ImagePullSecrets {
		if r.Name == name {
			n++
		}
	}
	return n
}

// waitForPullSecret waits until service account ns/sa lists its registry pull secret
// and the secret holds a token, and returns the secret.
func waitForPullSecret(t *testing.T, ctx context.Context, ns, sa string) *corev1.Secret {
	t.Helper()
	return waitForPullSecretWhere(t, ctx, ns, sa, func(*corev1.Secret) bool { return true })
}

func waitForPullSecretWhere(t *testing.T, ctx context.Context, ns, sa string, cond func(*corev1.Secret) bool) *corev1.Secret {
	t.Helper()
	var secret *corev1.Secret
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		account, err := env.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, ref := range account.ImagePullSecrets {
			s, err := env.Admin.CoreV1().Secrets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
			if err == nil && s.Labels["pullgate.dev/registry-pull-secret"] == "true" && s.Annotations["pullgate.dev/token-sha256"] != "" && cond(s) {
				secret = s
				return true
			}
		}
		return false
	}) {
		t.Fatalf("service account %s/%s has no registry pull secret", ns, sa)
	}
	return secret
}

// dockerConfigFromSecret writes the secret's credential for the registry into a
// DOCKER_CONFIG directory, as a user would copy it.
func dockerConfigFromSecret(t *testing.T, secret *corev1.Secret) string {
	t.Helper()
	cfg, err := credentials.FromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range cfg.Entries {
		if e.Key == env.RegistryHost {
			dir := t.TempDir()
			data, err := credentials.SetAuth(nil, e.Key, e.Credential, credentials.Docker)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}
	}
	t.Fatalf("secret %s/%s has no entry for %s", secret.Namespace, secret.Name, env.RegistryHost)
	return ""
}

// The controllers' requests are served at the controller manager's priority
// (FlowSchema pullgate-controllers → workload-high), not in global-default's shared
// seats, where a burst of namespaces queued them.
func TestControllersRequestsHaveTheControllerManagersPriority(t *testing.T) {
	ctx := harness.Context(t, time.Minute)
	ns := createNamespace(t, ctx, "priority")
	waitForServiceAccount(t, ctx, ns, "builder")
	metrics, err := env.Admin.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiserver_flowcontrol_dispatched_requests_total{flow_schema="pullgate-controllers",priority_level="workload-high"}`
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, want+" ") && !strings.HasSuffix(line, " 0") {
			return
		}
	}
	t.Errorf("no request of pullgate's controllers was dispatched at workload-high: the API server's metrics have no %s", want)
}
