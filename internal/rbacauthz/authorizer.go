// Package rbacauthz answers "may this user do this" from the cluster's RBAC objects,
// held in informers, with no API round trip per question. It evaluates the same
// rules the API server's RBAC authorizer does (component-helpers' rule comparison),
// so the registry and the token service decide exactly as kubectl auth can-i would.
package rbacauthz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// User is an authenticated identity, as a TokenReview returns it.
type User struct {
	Name   string
	Groups []string
}

// ServiceAccountUser is who the API server authenticates service account ns/name
// as: its user name and the groups every service account is in.
func ServiceAccountUser(ns, name string) User {
	return User{Name: serviceaccount.MakeUsername(ns, name), Groups: append(serviceaccount.MakeGroupNames(ns), user.AllAuthenticated)}
}

// Request is one thing a user wants to do, in RBAC's terms.
type Request struct {
	Verb, Namespace, Group, Resource, Subresource, Name string
}

func (r Request) String() string {
	res := r.Resource
	if r.Subresource != "" {
		res += "/" + r.Subresource
	}
	if r.Group != "" {
		res += "." + r.Group
	}
	s := r.Verb + " " + res
	if r.Name != "" {
		s += " " + r.Name
	}
	if r.Namespace != "" {
		s += " in namespace " + r.Namespace
	}
	return s
}

// Authorizer evaluates RBAC from informers.
type Authorizer struct {
	// Defaults, when set, are the role bindings a controller keeps in every namespace.
	// One that does not exist yet counts as if it did: a pod created with its
	// namespace must not be refused in the moment before the controller's binding
	// is written and seen. (A binding that exists counts as it is, with a user's edits.)
	Defaults func(namespace string) []*rbacv1.RoleBinding

	roles               rbaclisters.RoleLister
	clusterRoles        rbaclisters.ClusterRoleLister
	roleBindings        cache.Indexer
	clusterRoleBindings cache.Indexer
	synced              []cache.InformerSynced
}

const bySubject = "bySubject"

// New builds an Authorizer on factory's RBAC informers; start the factory, then
// WaitForSync.
func New(factory informers.SharedInformerFactory) (*Authorizer, error) {
	rb := factory.Rbac().V1().RoleBindings().Informer()
	crb := factory.Rbac().V1().ClusterRoleBindings().Informer()
	if err := rb.AddIndexers(cache.Indexers{bySubject: roleBindingSubjects}); err != nil {
		return nil, err
	}
	if err := crb.AddIndexers(cache.Indexers{bySubject: clusterRoleBindingSubjects}); err != nil {
		return nil, err
	}
	roles := factory.Rbac().V1().Roles()
	clusterRoles := factory.Rbac().V1().ClusterRoles()
	return &Authorizer{
		roles:               roles.Lister(),
		clusterRoles:        clusterRoles.Lister(),
		roleBindings:        rb.GetIndexer(),
		clusterRoleBindings: crb.GetIndexer(),
		synced:              []cache.InformerSynced{rb.HasSynced, crb.HasSynced, roles.Informer().HasSynced, clusterRoles.Informer().HasSynced},
	}, nil
}

// NewForClient starts its own informers on client and waits for them.
func NewForClient(ctx context.Context, client kubernetes.Interface) (*Authorizer, error) {
	factory := informers.NewSharedInformerFactory(client, 0)
	a, err := New(factory)
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return nil, fmt.Errorf("RBAC informers did not sync: %w", context.Cause(ctx))
	}
	return a, nil
}

// WaitForSync waits until the informers hold the cluster's RBAC objects.
func (a *Authorizer) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), a.synced...)
}

// Synced are the informers' HasSynced, for a controller that decides with a.
func (a *Authorizer) Synced() []cache.InformerSynced { return a.synced }

// Decision is RBAC's answer to one request, and what made it.
type Decision struct {
	Allowed bool
	// The binding that allows it: BindingNamespace is "" for a ClusterRoleBinding.
	BindingNamespace, BindingName string
	Role                          rbacv1.RoleRef
	// Subject is the binding's subject that names the user: the user, one of its
	// groups, or its service account.
	Subject rbacv1.Subject
	// Pending is set when the binding is one of Defaults not written yet.
	Pending bool
}

// String is the binding that allows it, e.g. "rolebinding b/system:image-pullers
// grants clusterrole system:image-puller", or "" when refused.
func (d Decision) String() string {
	switch {
	case !d.Allowed:
		return ""
	case d.BindingNamespace == "":
		return fmt.Sprintf("clusterrolebinding %s grants clusterrole %s", d.BindingName, d.Role.Name)
	case d.Pending:
		return fmt.Sprintf("rolebinding %s/%s (being created) grants %s %s", d.BindingNamespace, d.BindingName, strings.ToLower(d.Role.Kind), d.Role.Name)
	default:
		return fmt.Sprintf("rolebinding %s/%s grants %s %s", d.BindingNamespace, d.BindingName, strings.ToLower(d.Role.Kind), d.Role.Name)
	}
}

// Allowed reports whether user may do req, and which binding allows it.
func (a *Authorizer) Allowed(user User, req Request) (bool, string) {
	d := a.Decide(user, req)
	return d.Allowed, d.String()
}

// Decide is whether user may do req, with the binding, role and subject that allow
// it.
func (a *Authorizer) Decide(user User, req Request) Decision {
	want := []rbacv1.PolicyRule{{Verbs: []string{req.Verb}, APIGroups: []string{req.Group}, Resources: []string{resourcePath(req)}}}
	if req.Name != "" {
		want[0].ResourceNames = []string{req.Name}
	}
	keys := subjectKeys(user)
	for _, key := range keys {
		objs, _ := a.clusterRoleBindings.ByIndex(bySubject, key)
		for _, obj := range objs {
			b := obj.(*rbacv1.ClusterRoleBinding)
			if rules := a.rulesOf(b.RoleRef, ""); covers(rules, want) {
				return Decision{Allowed: true, BindingName: b.Name, Role: b.RoleRef, Subject: matching(b.Subjects, "", key)}
			}
		}
	}
	if req.Namespace == "" {
		return Decision{}
	}
	for _, key := range keys {
		objs, _ := a.roleBindings.ByIndex(bySubject, req.Namespace+"|"+key)
		for _, obj := range objs {
			b := obj.(*rbacv1.RoleBinding)
			if rules := a.rulesOf(b.RoleRef, b.Namespace); covers(rules, want) {
				return Decision{Allowed: true, BindingNamespace: b.Namespace, BindingName: b.Name, Role: b.RoleRef, Subject: matching(b.Subjects, b.Namespace, key)}
			}
		}
	}
	return a.allowedByDefault(keys, req.Namespace, want)
}

// matching is the subject of subjects whose index key is key.
func matching(subjects []rbacv1.Subject, bindingNamespace, key string) rbacv1.Subject {
	for _, s := range subjects {
		if subjectKey(s, bindingNamespace) == key {
			return s
		}
	}
	return rbacv1.Subject{}
}

// allowedByDefault evaluates the Defaults of namespace that do not exist yet.
func (a *Authorizer) allowedByDefault(keys []string, namespace string, want []rbacv1.PolicyRule) Decision {
	if a.Defaults == nil {
		return Decision{}
	}
	for _, b := range a.Defaults(namespace) {
		if _, exists, _ := a.roleBindings.GetByKey(namespace + "/" + b.Name); exists {
			continue
		}
		for _, s := range b.Subjects {
			if slices.Contains(keys, subjectKey(s, namespace)) && covers(a.rulesOf(b.RoleRef, namespace), want) {
				return Decision{Allowed: true, BindingNamespace: namespace, BindingName: b.Name, Role: b.RoleRef, Subject: s, Pending: true}
			}
		}
	}
	return Decision{}
}

func covers(rules, want []rbacv1.PolicyRule) bool {
	if len(rules) == 0 {
		return false
	}
	ok, _ := validation.Covers(rules, want)
	return ok
}

func resourcePath(req Request) string {
	if req.Subresource != "" {
		return req.Resource + "/" + req.Subresource
	}
	return req.Resource
}

func (a *Authorizer) rulesOf(ref rbacv1.RoleRef, namespace string) []rbacv1.PolicyRule {
	switch ref.Kind {
	case "ClusterRole":
		if r, err := a.clusterRoles.Get(ref.Name); err == nil {
			return r.Rules
		}
	case "Role":
		if r, err := a.roles.Roles(namespace).Get(ref.Name); err == nil {
			return r.Rules
		}
	}
	return nil
}

// subjectKeys are the index keys under which a binding names user: by user name,
// by each group, and as a service account.
func subjectKeys(user User) []string {
	keys := make([]string, 0, len(user.Groups)+2)
	keys = append(keys, "User:"+user.Name)
	for _, g := range user.Groups {
		keys = append(keys, "Group:"+g)
	}
	if ns, name, err := serviceaccount.SplitUsername(user.Name); err == nil {
		keys = append(keys, "ServiceAccount:"+ns+"/"+name)
	}
	return keys
}

func subjectKey(s rbacv1.Subject, bindingNamespace string) string {
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return "ServiceAccount:" + ns + "/" + s.Name
	case rbacv1.GroupKind:
		return "Group:" + s.Name
	default:
		return "User:" + s.Name
	}
}

func roleBindingSubjects(obj any) ([]string, error) {
	b, ok := obj.(*rbacv1.RoleBinding)
	if !ok {
		return nil, nil
	}
	return subjectIndexKeys(b.Namespace+"|", b.Namespace, b.Subjects), nil
}

func clusterRoleBindingSubjects(obj any) ([]string, error) {
	b, ok := obj.(*rbacv1.ClusterRoleBinding)
	if !ok {
		return nil, nil
	}
	return subjectIndexKeys("", "", b.Subjects), nil
}

// subjectIndexKeys are the index keys of a binding's subjects, each after prefix.
func subjectIndexKeys(prefix, bindingNamespace string, subjects []rbacv1.Subject) []string {
	out := make([]string, 0, len(subjects))
	for _, s := range subjects {
		out = append(out, prefix+subjectKey(s, bindingNamespace))
	}
	return out
}
