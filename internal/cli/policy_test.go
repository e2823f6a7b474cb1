package cli

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// roleRun runs one policy add/remove command as Complete would have filled it in.
func roleRun(t *testing.T, client *fake.Clientset, add bool, role string, names []string, sas []string, mods ...func(*RoleOptions)) (string, string, error) {
	t.Helper()
	s, out, errOut := streams()
	o := newRoleOptions(s, add, false)
	o.RoleName, o.Names, o.ServiceAccounts, o.Namespace, o.Client = role, names, sas, "b", client
	for _, m := range mods {
		m(o)
	}
	if err := o.Validate(); err != nil {
		return "", "", err
	}
	err := o.Run(context.Background())
	return out.String(), errOut.String(), err
}

func bindingNames(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	list, err := client.RbacV1().RoleBindings("b").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range list.Items {
		names = append(names, b.Name)
	}
	slices.Sort(names)
	return names
}

// oc's naming and reuse of role bindings, its messages, its warnings, dry runs, and
// removal that deletes a binding left empty.
func TestPolicyRoleCommands(t *testing.T) {
	puller := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:image-puller"}}
	client := fake.NewClientset(ns("b"), puller, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "default"}})
	sa := "system:serviceaccount:a:default"

	out, errOut, err := roleRun(t, client, true, "system:image-puller", []string{sa}, nil)
	if err != nil || out != "clusterrole.rbac.authorization.k8s.io/system:image-puller added: \"system:serviceaccount:a:default\"\n" || errOut != "" {
		t.Fatalf("add: %q %q %v", out, errOut, err)
	}
	b, _ := client.RbacV1().RoleBindings("b").Get(context.Background(), "system:image-puller", metav1.GetOptions{})
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.ServiceAccountKind || b.Subjects[0].Namespace != "a" {
		t.Errorf("subjects %+v", b.Subjects)
	}
	// Again: the binding that holds it is reused.
	if _, _, err := roleRun(t, client, true, "system:image-puller", []string{sa}, nil); err != nil {
		t.Fatal(err)
	}
	// Another user: a new binding, named -0.
	if _, _, err := roleRun(t, client, true, "system:image-puller", []string{"alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := bindingNames(t, client); !slices.Equal(got, []string{"system:image-puller", "system:image-puller-0"}) {
		t.Errorf("bindings %v", got)
	}
	// A dry run writes nothing and says so.
	writes := len(client.Actions())
	out, _, err = roleRun(t, client, true, "system:image-puller", []string{"bob"}, nil, func(o *RoleOptions) { o.DryRun = cmdutil.DryRunClient })
	if err != nil || !strings.HasSuffix(out, "(dry run)\n") {
		t.Errorf("dry run: %q %v", out, err)
	}
	for _, a := range client.Actions()[writes:] {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			t.Errorf("a dry run wrote: %s", a.GetVerb())
		}
	}
	// Missing role and service account: warnings, and the binding all the same.
	_, errOut, err = roleRun(t, client, true, "no-such-role", nil, []string{"ghost"})
	if err != nil || errOut != "Warning: role 'no-such-role' not found\nWarning: ServiceAccount 'ghost' not found\n" {
		t.Errorf("warnings: %q %v", errOut, err)
	}
	// Removal: the binding left empty is deleted.
	out, _, err = roleRun(t, client, false, "system:image-puller", []string{"alice"}, nil)
	if err != nil || !strings.Contains(out, "removed") {
		t.Errorf("remove: %q %v", out, err)
	}
	if got := bindingNames(t, client); slices.Contains(got, "system:image-puller-0") {
		t.Errorf("the emptied binding is still there: %v", got)
	}
	if _, _, err := roleRun(t, client, false, "system:image-puller", []string{"nobody"}, nil); err == nil {
		t.Error("removing a subject no binding holds succeeded")
	}
	// A Role from another namespace cannot be bound.
	if _, _, err := roleRun(t, client, true, "r", []string{"u"}, nil, func(o *RoleOptions) { o.RoleNamespace = "other" }); err == nil {
		t.Error("--role-namespace of another namespace was accepted")
	}
}
