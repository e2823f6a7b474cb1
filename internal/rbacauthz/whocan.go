package rbacauthz

import (
	"cmp"
	"slices"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

// Grant is one subject a binding lets do a request, through a role.
type Grant struct {
	// Subject is as the binding names it, with a service account's namespace filled in.
	Subject rbacv1.Subject
	// BindingNamespace is "" for a ClusterRoleBinding.
	BindingNamespace, BindingName string
	Role                          rbacv1.RoleRef
}

// UserName is the subject as a user name: a service account is
// system:serviceaccount:NS:NAME.
func (g Grant) UserName() string {
	if g.Subject.Kind == rbacv1.ServiceAccountKind {
		return serviceaccount.MakeUsername(g.Subject.Namespace, g.Subject.Name)
	}
	return g.Subject.Name
}

// Bindings is what WhoCan reads: the bindings that apply in a namespace, and the rules
// of a role.
type Bindings struct {
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
	RoleBindings        []*rbacv1.RoleBinding
	RulesOf             func(ref rbacv1.RoleRef, namespace string) []rbacv1.PolicyRule
}

// WhoCan lists every subject that b lets do req, with the binding and role that
// grant it, deciding each role's rules as the API server's RBAC authorizer does.
// Bindings restricted to resource names count only for a request that names one.
func WhoCan(req Request, b Bindings) []Grant {
	want := []rbacv1.PolicyRule{{Verbs: []string{req.Verb}, APIGroups: []string{req.Group}, Resources: []string{resourcePath(req)}}}
	if req.Name != "" {
		want[0].ResourceNames = []string{req.Name}
	}
	var out []Grant
	add := func(ns, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		if !covers(b.RulesOf(ref, ns), want) {
			return
		}
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Namespace == "" {
				s.Namespace = ns
			}
			out = append(out, Grant{Subject: s, BindingNamespace: ns, BindingName: name, Role: ref})
		}
	}
	for _, crb := range b.ClusterRoleBindings {
		add("", crb.Name, crb.RoleRef, crb.Subjects)
	}
	for _, rb := range b.RoleBindings {
		if req.Namespace == "" || rb.Namespace == req.Namespace {
			add(rb.Namespace, rb.Name, rb.RoleRef, rb.Subjects)
		}
	}
	slices.SortStableFunc(out, func(a, b Grant) int {
		return cmp.Or(cmp.Compare(a.Subject.Kind, b.Subject.Kind), cmp.Compare(a.UserName(), b.UserName()))
	})
	return out
}

// WhoCan lists who may do req, from the informers.
func (a *Authorizer) WhoCan(req Request) []Grant {
	var b Bindings
	for _, obj := range a.clusterRoleBindings.List() {
		b.ClusterRoleBindings = append(b.ClusterRoleBindings, obj.(*rbacv1.ClusterRoleBinding))
	}
	objs := a.roleBindings.List()
	if req.Namespace != "" {
		objs, _ = a.roleBindings.ByIndex(cache.NamespaceIndex, req.Namespace)
	}
	for _, obj := range objs {
		b.RoleBindings = append(b.RoleBindings, obj.(*rbacv1.RoleBinding))
	}
	b.RulesOf = a.rulesOf
	return WhoCan(req, b)
}

// WhoCan lists who b lets do req (b read once, e.g. by a command).
func (b Bindings) WhoCan(req Request) []Grant { return WhoCan(req, b) }
