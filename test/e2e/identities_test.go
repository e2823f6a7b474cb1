package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/harness"
)

// as is a client that impersonates user (and the groups the API server would add).
func as(t *testing.T, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(env.AdminConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// attempt is one thing an identity tries: refused (403) unless allowed.
type attempt struct {
	what    string
	allowed bool
	do      func(ctx context.Context) error
}

func tryAll(t *testing.T, ctx context.Context, who string, attempts []attempt) {
	t.Helper()
	for _, a := range attempts {
		err := a.do(ctx)
		switch {
		case a.allowed && err != nil && !apierrors.IsAlreadyExists(err):
			t.Errorf("%s could not %s, which it needs: %v", who, a.what, err)
		case !a.allowed && err == nil:
			t.Errorf("%s could %s", who, a.what)
		case !a.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s trying to %s: want 403 Forbidden, got %v", who, a.what, err)
		}
	}
}

var dryRun = metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}

// Whoever takes one of pullgate's components cannot make itself cluster-admin: each
// identity, impersonated, tries what the audit did (rewrite its own role to */*/*,
// bind cluster-admin, mint a token for a privileged account, forge a service account
// token secret, hand a registry role to everyone) and more, and is refused; what the
// component needs to do still works.
func TestIdentitiesCannotEscalate(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "victim")
	// A privileged account, as kube-system has many.
	if _, err := env.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "powerful"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-powerful"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "powerful", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), ns+"-powerful", metav1.DeleteOptions{})
	})
	userSecret, err := env.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-dockercfg"},
		Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: []byte("{}")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	allRights := func(c kubernetes.Interface, role string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			cr, err := c.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
			if err != nil {
				cr = &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}}
			}
			cr.Rules = []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}
			_, err = c.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	bind := func(c kubernetes.Interface, namespace, name, role string, subject rbacv1.Subject) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}, Subjects: []rbacv1.Subject{subject}}, dryRun)
			return err
		}
	}
	token := func(c kubernetes.Interface, namespace, sa string, audiences ...string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences}}, metav1.CreateOptions{})
			return err
		}
	}
	createSecret := func(c kubernetes.Interface, namespace string, s *corev1.Secret) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.CoreV1().Secrets(namespace).Create(ctx, s, dryRun)
			return err
		}
	}
	getSecret := func(c kubernetes.Interface, namespace, name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	saTokenSecret := func(sa string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "forged-token", Annotations: map[string]string{corev1.ServiceAccountNameKey: sa}}, Type: corev1.SecretTypeServiceAccountToken}
	}
	pullSecret := func(name string, labelled bool, typ corev1.SecretType) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Type: typ, Data: map[string][]byte{corev1.DockerConfigKey: []byte("{}")}}
		if typ != corev1.SecretTypeDockercfg {
			s.Data = map[string][]byte{"x": []byte("y")}
		}
		if labelled {
			s.Labels = map[string]string{"pullgate.dev/registry-pull-secret": "true"}
		}
		return s
	}
	lease := func(c kubernetes.Interface, namespace, name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.CoordinationV1().Leases(namespace).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}, dryRun)
			return err
		}
	}
	configMap := func(c kubernetes.Interface, namespace, name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, dryRun)
			return err
		}
	}
	// Workloads: one that follows a tag, one that does not.
	workload := func(name string, annotations map[string]string) {
		labels := map[string]string{"app": name}
		if _, err := env.Admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Spec: appsv1.DeploymentSpec{Replicas: new(int32), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1", Command: []string{"/app"}}}},
			}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	workload("plain", nil)
	workload("triggered", map[string]string{"image.openshift.io/triggers": `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`})
	patchDeployment := func(c kubernetes.Interface, name, patch string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.AppsV1().Deployments(ns).Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	const byDigest = "registry.example/app@sha256:2222222222222222222222222222222222222222222222222222222222222222"
	pullersGroup := rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:" + ns}

	t.Run("controllers", func(t *testing.T) {
		c := as(t, "pullgate:controllers")
		tryAll(t, ctx, "pullgate:controllers", []attempt{
			{"rewrite its own cluster role to */*/*", false, allRights(c, "pullgate:controllers")},
			{"bind cluster-admin in kube-system", false, bind(c, "kube-system", "evil", "cluster-admin", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "pullgate:controllers"})},
			{"bind admin to itself in a project", false, bind(c, ns, "evil", "admin", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "pullgate:controllers"})},
			{"give every user the right to push to a project (system:image-builder to system:authenticated)", false,
				bind(c, ns, "system:image-builders", "system:image-builder", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"})},
			{"give every account of the cluster pull rights in a project", false,
				bind(c, ns, "system:image-pullers", "system:image-puller", rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts"})},
			{"create the project's system:image-pullers binding", true, bind(c, ns, "system:image-pullers", "system:image-puller", pullersGroup)},
			{"mint an API token for a cluster-admin service account", false, token(c, ns, "powerful")},
			{"mint a token for a cluster-admin service account for the API server's audience, named", false, token(c, ns, "powerful", "https://kubernetes.default.svc.cluster.local")},
			{"mint a registry token for a service account", true, token(c, ns, "default", "pullgate-registry")},
			{"forge a service account token secret for a cluster-admin account", false, createSecret(c, ns, saTokenSecret("powerful"))},
			{"create an Opaque secret named like a pull secret", false, createSecret(c, ns, pullSecret("x-dockercfg", true, corev1.SecretTypeOpaque))},
			{"create a pull secret with another name", false, createSecret(c, ns, pullSecret("evil", true, corev1.SecretTypeDockercfg))},
			{"create a pull secret not labelled as its own", false, createSecret(c, ns, pullSecret("y-dockercfg", false, corev1.SecretTypeDockercfg))},
			{"create a pull secret of a service account", true, createSecret(c, ns, pullSecret("y-dockercfg", true, corev1.SecretTypeDockercfg))},
			{"overwrite a user's secret", false, func(ctx context.Context) error {
				s := userSecret.DeepCopy()
				s.Labels = map[string]string{"pullgate.dev/registry-pull-secret": "true"}
				_, err := c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
				return err
			}},
			{"delete a user's secret", false, func(ctx context.Context) error {
				return c.CoreV1().Secrets(ns).Delete(ctx, userSecret.Name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			}},
			{"write a configmap", false, configMap(c, ns, "evil")},
			{"take the kube-controller-manager's Lease", false, lease(c, "kube-system", "kube-controller-manager")},
			{"create another Lease in pullgate-system", false, lease(c, "pullgate-system", "pullgate-registry-prune")},
			{"create pods", false, func(ctx context.Context) error {
				_, err := c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, dryRun)
				return err
			}},
			{"delete a namespace", false, func(ctx context.Context) error {
				return c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			}},
			{"set a triggered workload's image to a digest", true, patchDeployment(c, "triggered", `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"`+byDigest+`"}]`)},
			{"set the image of a workload without triggers", false, patchDeployment(c, "plain", `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"`+byDigest+`"}]`)},
			{"set a triggered workload's image to a tag", false, patchDeployment(c, "triggered", `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"evil.example/miner:latest"}]`)},
			{"run a triggered workload as a cluster-admin account", false, patchDeployment(c, "triggered", `[{"op":"add","path":"/spec/template/spec/serviceAccountName","value":"powerful"}]`)},
			{"change a triggered workload's command", false, patchDeployment(c, "triggered", `[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["/bin/sh","-c","cat /var/run/secrets/*"]}]`)},
			{"add a container to a triggered workload", false, patchDeployment(c, "triggered", `[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"x","image":"`+byDigest+`"}}]`)},
			{"mount the host into a triggered workload", false, patchDeployment(c, "triggered", `[{"op":"add","path":"/spec/template/spec/volumes","value":[{"name":"host","hostPath":{"path":"/"}}]}]`)},
			{"remove a workload's triggers", false, patchDeployment(c, "triggered", `[{"op":"remove","path":"/metadata/annotations"}]`)},
			{"create a deployment", false, func(ctx context.Context) error {
				_, err := c.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, dryRun)
				return err
			}},
			{"delete a deployment", false, func(ctx context.Context) error {
				return c.AppsV1().Deployments(ns).Delete(ctx, "triggered", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			}},
			{"patch a job", false, func(ctx context.Context) error {
				_, err := c.BatchV1().Jobs(ns).Patch(ctx, "x", types.JSONPatchType, []byte(`[]`), metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
				return err
			}},
		})
		// Refused by the policy's rule, not by an expression that failed to evaluate.
		for _, patch := range []string{
			`[{"op":"add","path":"/spec/template/spec/serviceAccountName","value":"powerful"}]`,
			`[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sh"]}]`,
		} {
			if err := patchDeployment(c, "triggered", patch)(ctx); err == nil || !strings.Contains(err.Error(), "pullgate's controllers change only the container images") {
				t.Errorf("patch %s: want the admission policy's refusal, got %v", patch, err)
			}
		}
		// A registry token it may mint for any account is worth nothing to the API server.
		tr, err := c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "powerful", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"pullgate-registry"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("minting a registry token: %v", err)
		}
		stolen, err := kubernetes.NewForConfig(env.TokenConfig(tr.Status.Token))
		if err != nil {
			t.Fatal(err)
		}
		if err := stolen.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsUnauthorized(err) {
			t.Errorf("a registry-audience token of a cluster-admin account used against the API server: want 401, got %v", err)
		}
	})

	t.Run("registry", func(t *testing.T) {
		c := as(t, "pullgate:registry")
		tryAll(t, ctx, "pullgate:registry", []attempt{
			{"rewrite its own cluster role to */*/*", false, allRights(c, "pullgate:registry")},
			{"bind cluster-admin in kube-system", false, bind(c, "kube-system", "evil", "cluster-admin", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "pullgate:registry"})},
			{"read its signing keys", true, getSecret(c, "pullgate-system", "pullgate-registry-keys")},
			{"read a secret in kube-system", false, func(ctx context.Context) error {
				_, err := c.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
				return err
			}},
			{"read a user's secret", false, getSecret(c, ns, userSecret.Name)},
			{"forge a token secret for the controllers' account in pullgate-system", false, createSecret(c, "pullgate-system", saTokenSecret("pullgate-controllers"))},
			{"create another secret in pullgate-system", false, createSecret(c, "pullgate-system", pullSecret("x-dockercfg", true, corev1.SecretTypeDockercfg))},
			{"mint any service account token", false, token(c, ns, "powerful", "pullgate-registry")},
			{"publish a configmap of another name in kube-public", false, configMap(c, "kube-public", "cluster-info-evil")},
			{"take the controllers' Lease", false, lease(c, "pullgate-system", "pullgate-controllers")},
			{"create a Lease of another name in pullgate-system", false, lease(c, "pullgate-system", "pullgate-registry-prune-x")},
			{"create role bindings", false, bind(c, ns, "system:image-pullers", "system:image-puller", pullersGroup)},
		})
	})

	t.Run("token-service", func(t *testing.T) {
		c := as(t, "pullgate:token-service")
		tryAll(t, ctx, "pullgate:token-service", []attempt{
			{"review a token", true, func(ctx context.Context) error {
				_, err := c.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "x"}}, metav1.CreateOptions{})
				return err
			}},
			{"read the registry's signing keys", false, getSecret(c, "pullgate-system", "pullgate-registry-keys")},
			{"rewrite its own cluster role", false, allRights(c, "pullgate:token-service")},
			{"mint a token", false, token(c, ns, "powerful", "pullgate-registry")},
		})
	})

	t.Run("node", func(t *testing.T) {
		c := as(t, "system:node:local", "system:nodes")
		tryAll(t, ctx, "system:node:local", []attempt{
			{"read a secret of a namespace with no pod on the node", false, getSecret(c, ns, userSecret.Name)},
			{"mint a registry token for an account with no pod on the node", false, token(c, ns, "powerful", "pullgate-registry")},
			{"rewrite a cluster role", false, allRights(c, "pullgate:node")},
			{"bind cluster-admin", false, bind(c, "kube-system", "evil", "cluster-admin", rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:node:local"})},
		})
	})
}
