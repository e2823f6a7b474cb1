package roles

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// The roles grant what OpenShift's do: pull is get on imagestreams/layers, push is
// update; a rule a user added is kept; a role marked autoupdate=false is left alone.
func TestClusterRoles(t *testing.T) {
	ctx := context.Background()
	custom := rule([]string{"list"}, "imagestreams")
	puller := clusterRole(ImagePuller, nil, custom)
	frozen := clusterRole(ImagePusher, nil)
	frozen.Annotations = map[string]string{rbacv1.AutoUpdateAnnotationKey: "false"}
	client := fake.NewClientset(puller, frozen)
	if err := EnsureClusterRoles(ctx, client); err != nil {
		t.Fatal(err)
	}
	got, _ := client.RbacV1().ClusterRoles().Get(ctx, ImagePuller, metav1.GetOptions{})
	pull := rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}
	if ok, _ := validation.Covers(got.Rules, []rbacv1.PolicyRule{pull, custom}); !ok {
		t.Errorf("%s rules %v lack pull or the user's rule", ImagePuller, got.Rules)
	}
	push := rbacv1.PolicyRule{Verbs: []string{"update"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}
	if ok, _ := validation.Covers(got.Rules, []rbacv1.PolicyRule{push}); ok {
		t.Errorf("%s grants push", ImagePuller)
	}
	if got, _ := client.RbacV1().ClusterRoles().Get(ctx, ImagePusher, metav1.GetOptions{}); len(got.Rules) != 0 {
		t.Errorf("a role marked autoupdate=false was changed: %v", got.Rules)
	}
}

func TestEveryNamespacesBindings(t *testing.T) {
	names := map[string]rbacv1.Subject{}
	for _, b := range RoleBindings("p") {
		if b.Namespace != "p" || len(b.Subjects) != 1 {
			t.Errorf("binding %+v", b)
		}
		names[b.Name] = b.Subjects[0]
	}
	if s := names["system:image-pullers"]; s.Kind != rbacv1.GroupKind || s.Name != "system:serviceaccounts:p" {
		t.Errorf("system:image-pullers binds %+v", s)
	}
	if s := names["system:image-builders"]; s.Kind != rbacv1.ServiceAccountKind || s.Name != "builder" {
		t.Errorf("system:image-builders binds %+v", s)
	}
}
