package cli

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// who-can lists the subjects RBAC lets do it, from the bindings in the namespace and
// the cluster.
func TestWhoCan(t *testing.T) {
	client := fake.NewClientset(
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:image-puller"},
			Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "pullers"},
			RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:image-puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:b"},
				{Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "default"}}},
	)
	s, out, _ := streams()
	o := &WhoCanOptions{IOStreams: s, Verb: "get", Namespace: "b", Client: client, Subresource: "layers"}
	o.Resource.Group, o.Resource.Resource = "image.pullgate.dev", "imagestreams"
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "Namespace: b\nVerb:      get\nResource:  imagestreams.image.pullgate.dev/layers\n\nUsers:  system:serviceaccount:a:default\nGroups: system:serviceaccounts:b\n"
	if out.String() != want {
		t.Errorf("who-can:\n%s\nwant:\n%s", out, want)
	}
}
