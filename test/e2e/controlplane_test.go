package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// The README's tour: a namespace gets its default service account within 2 s, a
// docker-registry secret can be made in it, and deleting it completes.
func TestKubectlTour(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	if _, err := env.Kubectl(ctx, "create", "ns", "project-a"); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 2*time.Second, func(ctx context.Context) bool {
		_, err := env.Kubectl(ctx, "-n", "project-a", "get", "sa", "default")
		return err == nil
	}) {
		t.Fatal("kubectl -n project-a get sa default did not succeed within 2s of creating the namespace")
	}
	out, err := env.Kubectl(ctx, "-n", "project-a", "create", "secret", "docker-registry", "x",
		"--docker-server=r.example.com", "--docker-username=u", "--docker-password=p")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "secret/x created" {
		t.Errorf("kubectl create secret printed %q", out)
	}
	secret, err := env.Admin.CoreV1().Secrets("project-a").Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if secret.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("secret type %q, want %q", secret.Type, corev1.SecretTypeDockerConfigJson)
	}
	cfg, err := credentials.ParseDockerConfigJSON(secret.Data[corev1.DockerConfigJsonKey], credentials.Source{Kind: "secret", Name: "project-a/x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Entries) != 1 || cfg.Entries[0].Key != "r.example.com" || cfg.Entries[0].Username != "u" || cfg.Entries[0].Password != "p" {
		t.Errorf("secret holds %+v, want one entry r.example.com for user u", cfg.Entries)
	}

	if _, err := env.Kubectl(ctx, "delete", "ns", "project-a", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	_, err = env.Admin.CoreV1().Namespaces().Get(ctx, "project-a", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("namespace project-a still there after kubectl delete returned: %v", err)
	}
}

// kubectl, built from the same release, sees the embedded server's real version,
// and `pullgate version` names it, with its own version as make build stamped it.
func TestVersions(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	out, err := env.Kubectl(ctx, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Server Version: v1.37.2") {
		t.Errorf("kubectl version:\n%s\nwant Server Version: v1.37.2", out)
	}
	pg, err := exec.CommandContext(ctx, env.Bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("pullgate version: %v\n%s", err, pg)
	}
	if !strings.Contains(string(pg), "kubernetes v1.37.2") {
		t.Errorf("pullgate version printed %q, want the embedded kubernetes v1.37.2", pg)
	}
	// make build stamps the version (-X …/internal/platform/version.Version): a
	// package moved without its -X leaves the default.
	if strings.HasPrefix(string(pg), "pullgate dev\n") {
		t.Errorf("pullgate version printed %q: the build's version stamp did not take", pg)
	}
}

// Every /readyz check passes, as `kubectl get --raw /readyz?verbose` shows.
func TestEveryReadyzCheckPasses(t *testing.T) {
	out, err := env.Kubectl(harness.Context(t, 2*time.Minute), "get", "--raw", "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "readyz check passed") || strings.Contains(out, "[-]") {
		t.Errorf("readyz:\n%s", out)
	}
}

// A new namespace gets kube-root-ca.crt holding pullgate's CA (root-ca-cert-publisher).
func TestNewNamespaceGetsRootCA(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "rootca")
	var cm *corev1.ConfigMap
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		var err error
		cm, err = env.Admin.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil
	}) {
		t.Fatal("kube-root-ca.crt was not published")
	}
	if got, want := strings.TrimSpace(cm.Data["ca.crt"]), strings.TrimSpace(string(env.AdminConfig.CAData)); got != want {
		t.Errorf("kube-root-ca.crt is not pullgate's CA")
	}
}

// Deleting an owner collects what it owns (garbage collector).
func TestOwnerReferencesAreCollected(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "gc")
	cms := env.Admin.CoreV1().ConfigMaps(ns)
	owner, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name:            "owned",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		_, err := cms.Get(ctx, "owned", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}) {
		t.Fatal("configmap owned by a deleted owner was not collected")
	}
}

// A service-account client authenticates as that service account and is bound by
// RBAC: forbidden to list pods until a RoleBinding grants view.
func TestServiceAccountClientsFollowRBAC(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "sa-rbac")
	waitForServiceAccount(t, ctx, ns, "default")
	sa, err := env.ServiceAccountClient(ctx, ns, "default")
	if err != nil {
		t.Fatal(err)
	}
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":default"; review.Status.UserInfo.Username != want {
		t.Errorf("service-account client is %q, want %q", review.Status.UserInfo.Username, want)
	}
	if _, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing pods without a role: err = %v, want Forbidden", err)
	}
	_, err = env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "default-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil
	}) {
		t.Fatal("service account still cannot list pods after being granted view")
	}
}
