package explain

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/pkg/credentials"
)

const registry = "localhost:5000"

// allow lets the users named pull, through a binding named after them.
type allow map[string]bool

func (a allow) Decide(user rbacauthz.User, _ rbacauthz.Request) rbacauthz.Decision {
	if !a[user.Name] {
		return rbacauthz.Decision{}
	}
	return rbacauthz.Decision{Allowed: true, BindingNamespace: "b", BindingName: "pullers",
		Role: rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:image-puller"}, Subject: rbacv1.Subject{Kind: "Group", Name: "system:serviceaccounts:a"}}
}

func pullSecret(t *testing.T, ns, name string, typ corev1.SecretType, entries map[string][2]string) *corev1.Secret {
	t.Helper()
	var data []byte
	for key, up := range entries {
		var err error
		if data, err = credentials.SetAuth(data, key, credentials.Credential{Username: up[0], Password: up[1]}, credentials.Docker); err != nil {
			t.Fatal(err)
		}
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: typ, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
}

func pod(ns, name, image string, secrets ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: image}}}}
	for _, s := range secrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return p
}

func account(ns string, secrets ...string) *corev1.ServiceAccount {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	for _, s := range secrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return sa
}

func TestVerdicts(t *testing.T) {
	quay := map[string][2]string{"quay.io": {"user", "p1"}, "quay.io/repository-main": {"main", "p2"}}
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		allowed allow
		pulls   bool
		says    string // in the verdict's With or Cause
		fix     string // in the fix
	}{
		{"another project's image, refused", []runtime.Object{pod("a", "app", registry+"/b/app:v1"), account("a")}, allow{},
			false, "system:serviceaccount:a:default may not pull b/app", "pullgate policy add-role-to-user system:image-puller system:serviceaccount:a:default -n b"},
		{"another project's image, granted", []runtime.Object{pod("a", "app", registry+"/b/app:v1"), account("a")}, allow{"system:serviceaccount:a:default": true},
			true, "token of service account a/default", ""},
		{"an Opaque secret", []runtime.Object{pod("a", "app", "quay.io/repository-main/app", "pull"), account("a"), pullSecret(t, "a", "pull", corev1.SecretTypeOpaque, quay)}, allow{},
			false, "type Opaque", "--type=kubernetes.io/dockerconfigjson"},
		{"the most specific key first", []runtime.Object{pod("a", "app", "quay.io/repository-main/app", "pull"), account("a"), pullSecret(t, "a", "pull", corev1.SecretTypeDockerConfigJson, quay)}, allow{},
			true, `user "main", key quay.io/repository-main`, ""},
		{"linked after the pod was created", []runtime.Object{pod("a", "app", "quay.io/other/app"), account("a", "pull"), pullSecret(t, "a", "pull", corev1.SecretTypeDockerConfigJson, quay)}, allow{},
			false, "the pod was created before default had it", `kubectl patch --local -f - --type=json -p '[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"pull"}]}]' -o yaml | kubectl replace --force -f -`},
		{"never linked", []runtime.Object{pod("a", "app", "quay.io/other/app"), account("a"), pullSecret(t, "a", "pull", corev1.SecretTypeDockerConfigJson, quay)}, allow{},
			false, "not linked to service account default for pull", "pullgate secrets link default pull --for=pull -n a"},
		{"a missing secret", []runtime.Object{pod("a", "app", "quay.io/other/app", "gone"), account("a")}, allow{},
			false, "image pull secret a/gone does not exist", "pullgate create secret docker-registry gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Explainer{Client: fake.NewClientset(tc.objects...), Authz: tc.allowed, RegistryHosts: []string{registry}, CredentialProvider: true}
			r, err := e.Pod(context.Background(), "a", "app")
			if err != nil {
				t.Fatal(err)
			}
			v := r.Images[0].Verdict
			if v.WouldPull != tc.pulls || !strings.Contains(v.With+v.Cause, tc.says) || !strings.Contains(v.Fix, tc.fix) {
				var out strings.Builder
				_ = r.Write(&out)
				t.Errorf("verdict %+v\nwant pulls=%v saying %q, fix %q\n%s", v, tc.pulls, tc.says, tc.fix, out.String())
			}
			if r.WouldPull() != tc.pulls {
				t.Errorf("WouldPull %v", r.WouldPull())
			}
		})
	}
}

// No secret value or token is ever in the report.
func TestNoSecretInTheReport(t *testing.T) {
	secret := pullSecret(t, "a", "pull", corev1.SecretTypeDockerConfigJson, map[string][2]string{"quay.io": {"user", "hunter2"}})
	e := &Explainer{Client: fake.NewClientset(pod("a", "app", "quay.io/x/app", "pull"), account("a"), secret)}
	r, err := e.Pod(context.Background(), "a", "app")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := r.Write(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hunter2") || !strings.Contains(out.String(), `user "user"`) {
		t.Errorf("report:\n%s", out.String())
	}
}
