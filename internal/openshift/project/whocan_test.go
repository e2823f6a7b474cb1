package project

import (
	"context"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/rbacauthz"
)

// WhoCan names each user and group once, sorted, from cluster and namespace
// bindings; a Role of the namespace counts.
func TestWhoCan(t *testing.T) {
	pull := []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}}
	client := fake.NewClientset(
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "puller"}, Rules: pull},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "local-puller"}, Rules: pull},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "everyone"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, Name: "ops"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "p"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "zed"}, {Kind: rbacv1.ServiceAccountKind, Namespace: "a", Name: "default"}, {Kind: rbacv1.UserKind, Name: "zed"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "l"}, RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "local-puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "amy"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "p"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "other-namespace"}}},
	)
	rbac, err := ListedRBAC(context.Background(), client, "b")
	if err != nil {
		t.Fatal(err)
	}
	got := WhoCan(rbac, rbacauthz.Request{Verb: "get", Namespace: "b", Group: "image.pullgate.dev", Resource: "imagestreams", Subresource: "layers"})
	if !slices.Equal(got.Users, []string{"amy", "system:serviceaccount:a:default", "zed"}) || !slices.Equal(got.Groups, []string{"ops"}) {
		t.Errorf("who can pull in b: %+v", got)
	}
	if got := WhoCan(rbac, rbacauthz.Request{Verb: "delete", Namespace: "b", Resource: "pods"}); got.Users == nil || len(got.Users)+len(got.Groups) != 0 {
		t.Errorf("who can delete pods: %+v, want empty lists", got)
	}
}
