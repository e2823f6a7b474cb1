package rbacauthz

import (
	"fmt"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WhoCan lists each subject with the binding that grants it, as RBAC decides: a rule
// restricted to resource names counts only for that name, bindings of other
// namespaces do not count, cluster role bindings count everywhere.
func TestWhoCan(t *testing.T) {
	a := newAuthorizer(t,
		clusterRole("system:image-puller", pullRule),
		clusterRole("named-puller", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}, ResourceNames: []string{"app"}}),
		clusterRole("viewer", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}),
		binding("project-b", "system:image-pullers", "system:image-puller", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:project-b"}),
		binding("project-b", "a-default", "system:image-puller", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: "project-a"}),
		binding("project-b", "own-builder", "system:image-puller", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "builder"}),
		binding("project-b", "alice-app", "named-puller", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "alice"}),
		binding("project-b", "bob-views", "viewer", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "bob"}),
		binding("project-c", "carol", "system:image-puller", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "carol"}),
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "everyone-pulls"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:image-puller"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "dave"}}},
	)
	show := func(gs []Grant) []string {
		var out []string
		for _, g := range gs {
			out = append(out, fmt.Sprintf("%s %s via %s/%s", g.Subject.Kind, g.UserName(), g.BindingNamespace, g.BindingName))
		}
		return out
	}
	got := show(a.WhoCan(pull("project-b", "")))
	want := []string{
		"Group system:serviceaccounts:project-b via project-b/system:image-pullers",
		"ServiceAccount system:serviceaccount:project-a:default via project-b/a-default",
		"ServiceAccount system:serviceaccount:project-b:builder via project-b/own-builder",
		"User dave via /everyone-pulls",
	}
	if !slices.Equal(got, want) {
		t.Errorf("who can pull in project-b:\n got %q\nwant %q", got, want)
	}
	if got := show(a.WhoCan(pull("project-b", "app"))); !slices.Contains(got, "User alice via project-b/alice-app") {
		t.Errorf("who can pull project-b/app: %q lacks alice", got)
	}
}
