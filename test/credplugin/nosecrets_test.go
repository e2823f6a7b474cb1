package credplugin

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"pullgate.dev/pullgate/internal/harness"
)

// With --serviceaccount-pull-secrets=false no long-lived registry credential exists,
// and pods still pull with their own service account's identity, as RBAC decides.
func TestPodsPullWithoutPullSecrets(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	shared := env.Namespace(t, ctx, "shared")
	token, err := env.Account(ctx, shared, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	image := env.RegistryHost + "/" + shared + "/app:v1"
	if _, err := harness.PushFile(ctx, dockerConfig(t, token), image, []byte("no pull secret needed")); err != nil {
		t.Fatal(err)
	}
	// Every service account may pull from the shared project.
	if _, err := env.Admin.RbacV1().RoleBindings(shared).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "all-service-accounts"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("a pod applied with its namespace pulls", func(t *testing.T) {
		ns := "fresh-" + rand.String(6)
		file := filepath.Join(t.TempDir(), "apply.yaml")
		manifest := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: %s}\nspec:\n  containers: [{name: app, image: %s}]\n", ns, ns, image)
		if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Kubectl(ctx, "apply", "-f", file); err != nil {
			t.Fatal(err)
		}
		env.WaitForImagesPulled(t, ctx, ns, "app", corev1.ConditionTrue, time.Minute)
	})

	t.Run("a pod of another project is refused until system:image-puller is granted", func(t *testing.T) {
		private := env.Namespace(t, ctx, "private")
		token, err := env.Account(ctx, private, "pusher", "admin")
		if err != nil {
			t.Fatal(err)
		}
		privateImage := env.RegistryHost + "/" + private + "/app:v1"
		if _, err := harness.PushFile(ctx, dockerConfig(t, token), privateImage, []byte("private")); err != nil {
			t.Fatal(err)
		}
		other := env.Namespace(t, ctx, "other")
		if _, err := env.Admin.CoreV1().Pods(other).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: privateImage}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		env.WaitForImagesPulled(t, ctx, other, "app", corev1.ConditionFalse, time.Minute)
		res, err := harness.Run(ctx, harness.RunOptions{}, "policy", "add-role-to-user", "system:image-puller",
			"system:serviceaccount:"+other+":default", "--namespace", private, "--kubeconfig", env.Kubeconfig)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("policy add-role-to-user: %v %s %s", err, res.Stdout, res.Stderr)
		}
		env.WaitForImagesPulled(t, ctx, other, "app", corev1.ConditionTrue, time.Minute)
	})

	t.Run("no registry pull secret exists", func(t *testing.T) {
		secrets, err := env.Admin.CoreV1().Secrets("").List(ctx, metav1.ListOptions{FieldSelector: "type=" + string(corev1.SecretTypeDockercfg)})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets.Items {
			t.Errorf("secret %s/%s of type %s exists", s.Namespace, s.Name, s.Type)
		}
		accounts, err := env.Admin.CoreV1().ServiceAccounts(shared).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, sa := range accounts.Items {
			if len(sa.ImagePullSecrets) != 0 {
				t.Errorf("service account %s/%s has pull secrets %v", sa.Namespace, sa.Name, sa.ImagePullSecrets)
			}
		}
	})
}
