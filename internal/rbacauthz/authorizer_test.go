package rbacauthz

import (
	"context"
	"fmt"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func clusterRole(name string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
}

func binding(ns, name, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   subjects,
	}
}

var pullRule = rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}}

func newAuthorizer(t testing.TB, objs ...runtime.Object) *Authorizer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := NewForClient(ctx, fake.NewClientset(objs...))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func pull(ns, name string) Request {
	return Request{Verb: "get", Namespace: ns, Group: "image.pullgate.dev", Resource: "imagestreams", Subresource: "layers", Name: name}
}

func TestAllowedFollowsBindings(t *testing.T) {
	a := newAuthorizer(t,
		clusterRole("system:image-puller", pullRule),
		clusterRole("named-puller", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{"image.pullgate.dev"}, Resources: []string{"imagestreams/layers"}, ResourceNames: []string{"app"}}),
		clusterRole("everything", rbacv1.PolicyRule{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}),
		binding("project-b", "system:image-pullers", "system:image-puller", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:project-b"}),
		binding("project-b", "a-default", "system:image-puller", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: "project-a"}),
		binding("project-c", "alice-app", "named-puller", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "alice"}),
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "root"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "everything"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: "root"}}},
	)
	sa := func(ns, name string) User {
		return User{Name: "system:serviceaccount:" + ns + ":" + name, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	}
	tests := []struct {
		user User
		req  Request
		want bool
	}{
		{sa("project-b", "builder"), pull("project-b", "app"), true},  // group binding
		{sa("project-a", "default"), pull("project-b", "app"), true},  // service-account binding
		{sa("project-a", "other"), pull("project-b", "app"), false},   // not bound
		{sa("project-b", "builder"), pull("project-a", "app"), false}, // other namespace
		{User{Name: "alice"}, pull("project-c", "app"), true},         // resourceNames match
		{User{Name: "alice"}, pull("project-c", "db"), false},         // resourceNames do not
		{User{Name: "root"}, pull("anywhere", "x"), true},             // cluster role binding
		{sa("project-b", "builder"), Request{Verb: "update", Namespace: "project-b", Group: "image.pullgate.dev", Resource: "imagestreams", Subresource: "layers"}, false},
	}
	for _, tt := range tests {
		got, why := a.Allowed(tt.user, tt.req)
		if got != tt.want {
			t.Errorf("%s: %s → %v (%s), want %v", tt.user.Name, tt.req, got, why, tt.want)
		}
		if got && why == "" {
			t.Errorf("an allowed request says no binding")
		}
	}
}

// A default binding that the controller has not written yet counts as written; once
// it exists, only what it says counts (a user's edit of its subjects wins).
func TestDefaultsCountUntilTheBindingExists(t *testing.T) {
	defaults := func(ns string) []*rbacv1.RoleBinding {
		return []*rbacv1.RoleBinding{binding(ns, "system:image-pullers", "system:image-puller", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:" + ns})}
	}
	a := newAuthorizer(t, clusterRole("system:image-puller", pullRule),
		binding("edited", "system:image-pullers", "system:image-puller", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "alice"}))
	a.Defaults = defaults
	sa := func(ns string) User {
		return User{Name: "system:serviceaccount:" + ns + ":default", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}
	}
	if ok, why := a.Allowed(sa("new"), pull("new", "app")); !ok || why == "" {
		t.Errorf("a new namespace's service account is refused before its binding is written")
	}
	if ok, _ := a.Allowed(sa("other"), pull("new", "app")); ok {
		t.Errorf("another namespace's service account is allowed by the default binding")
	}
	if ok, _ := a.Allowed(sa("edited"), pull("edited", "app")); ok {
		t.Errorf("the default counted although the binding exists without that subject")
	}
}

// Deciding with 10,000 role bindings in the cluster: an index look-up, no API call.
func BenchmarkAllowed10000Bindings(b *testing.B) {
	objs := []runtime.Object{clusterRole("system:image-puller", pullRule)}
	for i := range 10000 {
		ns := fmt.Sprintf("ns-%d", i%1000)
		objs = append(objs, binding(ns, fmt.Sprintf("b-%d", i), "system:image-puller", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: fmt.Sprintf("sa-%d", i), Namespace: "clients"}))
	}
	a := newAuthorizer(b, objs...)
	user := User{Name: "system:serviceaccount:clients:sa-4242", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:clients", "system:authenticated"}}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := a.Allowed(user, pull("ns-242", "app")); !ok {
			b.Fatal("denied")
		}
	}
}
