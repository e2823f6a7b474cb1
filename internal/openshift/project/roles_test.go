package project

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func bindingsIn(t *testing.T, client *fake.Clientset, ns string) map[string][]rbacv1.Subject {
	t.Helper()
	list, err := client.RbacV1().RoleBindings(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]rbacv1.Subject{}
	for _, b := range list.Items {
		out[b.Name] = b.Subjects
	}
	return out
}

func writes(client *fake.Clientset, from int) []string {
	var out []string
	for _, a := range client.Actions()[from:] {
		if v := a.GetVerb(); v == "create" || v == "update" || v == "delete" {
			out = append(out, v+" "+a.GetResource().Resource)
		}
	}
	return out
}

// Grant follows OpenShift: a binding named for the role, reused while it holds the
// subjects, a -0 binding for someone new, nothing written when all are bound, a
// client dry run that writes nothing, warnings for what does not exist.
func TestGrant(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:image-puller"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default"}})
	grant := func(c RoleChange) RoleResult {
		t.Helper()
		c.Namespace = "b"
		if c.Role == "" {
			c.Role = "system:image-puller"
		}
		res, err := Grant(ctx, client, c)
		if err != nil {
			t.Fatalf("grant %+v: %v", c, err)
		}
		return res
	}
	res := grant(RoleChange{Subjects: []rbacv1.Subject{ServiceAccount("a", "default")}})
	if res.Unchanged || len(res.Warnings) != 0 || res.Bindings[0].Name != "system:image-puller" {
		t.Errorf("first grant: %+v", res)
	}
	before := len(client.Actions())
	if res := grant(RoleChange{Subjects: []rbacv1.Subject{ServiceAccount("a", "default")}}); !res.Unchanged {
		t.Errorf("granting again changed something: %+v", res)
	}
	if w := writes(client, before); len(w) != 0 {
		t.Errorf("granting again wrote %v", w)
	}
	grant(RoleChange{Subjects: []rbacv1.Subject{Subject("alice", false)}})
	got := bindingsIn(t, client, "b")
	if len(got) != 2 || len(got["system:image-puller-0"]) != 1 || got["system:image-puller-0"][0].Name != "alice" {
		t.Errorf("bindings after alice: %v", got)
	}
	before = len(client.Actions())
	res = grant(RoleChange{Subjects: []rbacv1.Subject{Subject("bob", false)}, DryRun: ClientDryRun})
	if w := writes(client, before); len(w) != 0 || res.Bindings[0].Name != "system:image-puller-1" {
		t.Errorf("client dry run: wrote %v, result %+v", w, res)
	}
	res = grant(RoleChange{Role: "no-such-role", Subjects: []rbacv1.Subject{ServiceAccount("b", "ghost")}})
	if !slices.Equal(res.Warnings, []string{"role 'no-such-role' not found", "ServiceAccount 'ghost' not found"}) {
		t.Errorf("warnings %q", res.Warnings)
	}
	// A named binding of another role is refused; a Role of another namespace too.
	if _, err := Grant(ctx, client, RoleChange{Namespace: "b", Role: "view", Binding: "system:image-puller", Subjects: []rbacv1.Subject{Subject("x", false)}}); err == nil || !strings.Contains(err.Error(), "found for role system:image-puller") {
		t.Errorf("binding of another role: %v", err)
	}
	if _, err := Grant(ctx, client, RoleChange{Namespace: "b", Role: "r", RoleNamespace: "other", Subjects: []rbacv1.Subject{Subject("x", false)}}); err == nil {
		t.Error("a Role of another namespace was bound")
	}
}

// Revoke takes subjects from every binding of the role, deletes a binding left
// empty, says when nobody was bound, and in a client dry run writes nothing.
func TestRevoke(t *testing.T) {
	ctx := context.Background()
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"}
	client := fake.NewClientset(
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "admin"}, RoleRef: ref, Subjects: []rbacv1.Subject{Subject("alice", false), Subject("bob", false)}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "admin-0", Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}}, RoleRef: ref, Subjects: []rbacv1.Subject{Subject("alice", false)}},
	)
	change := RoleChange{Namespace: "b", Role: "admin", Subjects: []rbacv1.Subject{Subject("alice", false)}}
	before := len(client.Actions())
	dry := change
	dry.DryRun = ClientDryRun
	res, err := Revoke(ctx, client, dry)
	if err != nil || len(res.Bindings) != 2 || len(writes(client, before)) != 0 {
		t.Fatalf("dry run: %+v %v, wrote %v", res, err, writes(client, before))
	}
	res, err = Revoke(ctx, client, change)
	if err != nil || !slices.Equal(res.Deleted, []string{"admin-0"}) || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "oc annotate rolebinding.rbac admin-0") {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	if got := bindingsIn(t, client, "b"); len(got) != 1 || len(got["admin"]) != 1 || got["admin"][0].Name != "bob" {
		t.Errorf("after revoke: %v", got)
	}
	if _, err := Revoke(ctx, client, change); !errors.Is(err, ErrNotBound) {
		t.Errorf("revoking again: %v, want ErrNotBound", err)
	}
	if _, err := Revoke(ctx, client, RoleChange{Namespace: "b", Role: "edit", Subjects: change.Subjects}); err == nil || !strings.Contains(err.Error(), `unable to locate any RoleBinding for ClusterRole "edit"`) {
		t.Errorf("a role nobody holds: %v", err)
	}
}

// The cluster-role commands: the same algorithm over cluster role bindings.
func TestClusterRoles(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	c := RoleChange{Namespace: "p", Cluster: true, Role: "view", Subjects: []rbacv1.Subject{Subject("u1", false)}}
	if _, err := Grant(ctx, client, c); err != nil {
		t.Fatal(err)
	}
	b, err := client.RbacV1().ClusterRoleBindings().Get(ctx, "view", metav1.GetOptions{})
	if err != nil || b.RoleRef.Kind != "ClusterRole" || len(b.Subjects) != 1 || b.Subjects[0].Name != "u1" {
		t.Fatalf("cluster role binding: %+v %v", b, err)
	}
	if res, err := Grant(ctx, client, c); err != nil || !res.Unchanged {
		t.Errorf("granted twice: %+v %v", res, err)
	}
	if _, err := client.RbacV1().RoleBindings("p").Get(ctx, "view", metav1.GetOptions{}); err == nil {
		t.Error("a cluster role grant made a role binding")
	}
	res, err := Revoke(ctx, client, c)
	if err != nil || len(res.Deleted) != 1 {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	if _, err := Revoke(ctx, client, c); err == nil || err.Error() != `unable to locate any ClusterRoleBinding for ClusterRole "view"` {
		t.Errorf("revoke of a role bound to nobody: %v", err)
	}
}
