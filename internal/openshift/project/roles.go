package project

import (
	"context"
	"errors"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// DryRun is how far a change goes: all the way, computed only (the client's dry
// run: nothing sent), or sent for the API server to check and not keep.
type DryRun int

const (
	NoDryRun DryRun = iota
	ClientDryRun
	ServerDryRun
)

func (d DryRun) options() []string {
	if d == ServerDryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// RoleChange is a role given to (Grant) or taken from (Revoke) subjects in a
// namespace, with OpenShift's algorithm for choosing the binding (oc's
// pkg/cli/admin/policy/modify_roles.go is the reference).
type RoleChange struct {
	Namespace string
	// Cluster makes the change in cluster role bindings (oc adm policy
	// add-cluster-role-to-user …): Role is a ClusterRole, Namespace only names the
	// -z service accounts' namespace.
	Cluster bool
	Role    string
	// RoleNamespace, when set, makes Role a Role of that namespace (it must be
	// Namespace); empty, a ClusterRole.
	RoleNamespace string
	// Binding is the role binding to use; empty: Grant reuses a binding of the role
	// or makes one named for it, Revoke takes the subjects from every binding of it.
	Binding  string
	Subjects []rbacv1.Subject
	DryRun   DryRun
}

// RoleResult is what a role change did.
type RoleResult struct {
	// Bindings are, for Grant, the binding that holds the subjects (or would, in a
	// client dry run); for Revoke, the bindings the subjects were taken from, as they
	// are after it.
	Bindings []rbacv1.RoleBinding
	// Deleted are the bindings Revoke deleted because no subject was left in them.
	Deleted []string
	// Unchanged says every subject was bound already: nothing was written.
	Unchanged bool
	// Warnings are oc's: a role or service account that does not exist (bound all
	// the same), a binding the API server may reconcile back.
	Warnings []string
}

// ErrNotBound is Revoke's answer when no binding of the role holds any of the
// subjects.
var ErrNotBound = errors.New("no binding of the role holds the subjects")

// RoleKind is "Role" for a namespaced role, else "ClusterRole".
func (c RoleChange) RoleKind() string {
	if c.RoleNamespace != "" && !c.Cluster {
		return "Role"
	}
	return "ClusterRole"
}

// bindingKind is the kind of binding changed, as oc's messages name it.
func (c RoleChange) bindingKind() string {
	if c.Cluster {
		return "ClusterRoleBinding"
	}
	return "RoleBinding"
}

// Validate checks what can be checked without the API.
func (c RoleChange) Validate() error {
	if c.RoleNamespace != "" && !c.Cluster && c.RoleNamespace != c.Namespace {
		return fmt.Errorf("role binding in namespace %q can't reference role in different namespace %q", c.Namespace, c.RoleNamespace)
	}
	if c.Role == "" {
		return errors.New("you must specify a role")
	}
	return nil
}

// Grant binds the role to the subjects: in the named binding, else in a binding of
// the role that holds them all already (nothing to do), else in a new binding named
// for the role (name, name-0 … name-99).
func Grant(ctx context.Context, client kubernetes.Interface, c RoleChange) (RoleResult, error) {
	if err := c.Validate(); err != nil {
		return RoleResult{}, err
	}
	bindings := c.store(client)
	var binding *rbacv1.RoleBinding
	update := false
	name := c.Binding
	if c.Binding != "" {
		existing, err := bindings.Get(ctx, c.Binding)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return RoleResult{}, err
		case existing.RoleRef.Name != c.Role:
			return RoleResult{}, fmt.Errorf("rolebinding %s found for role %s, not %s", c.Binding, existing.RoleRef.Name, c.Role)
		case existing.RoleRef.Kind != c.RoleKind():
			return RoleResult{}, fmt.Errorf("rolebinding %s found for %q, not %q", c.Binding, existing.RoleRef.Kind, c.RoleKind())
		default:
			binding, update = existing, true
		}
	} else {
		// One list answers both questions: is the role already bound to them all, and
		// which name is free.
		of, all, err := c.bindingsOfRole(ctx, bindings)
		if err != nil {
			return RoleResult{}, err
		}
		for i := range of {
			if len(addSubjects(of[i].Subjects, c.Subjects)) == len(of[i].Subjects) {
				return RoleResult{Bindings: []rbacv1.RoleBinding{of[i]}, Unchanged: true}, nil
			}
		}
		if name, err = uniqueName(c.Role, all); err != nil {
			return RoleResult{}, err
		}
	}
	if binding == nil {
		ns := c.Namespace
		if c.Cluster {
			ns = ""
		}
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: c.RoleKind(), Name: c.Role}}
	}
	res := RoleResult{Warnings: c.missing(ctx, client, binding)}
	binding.Subjects = addSubjects(binding.Subjects, c.Subjects)
	res.Bindings = []rbacv1.RoleBinding{*binding}
	if c.DryRun == ClientDryRun {
		return res, nil
	}
	var err error
	if update {
		err = bindings.Update(ctx, binding, c.DryRun.options())
	} else {
		err = bindings.Create(ctx, binding, c.DryRun.options())
		if apierrors.IsAlreadyExists(err) {
			return Grant(ctx, client, c) // made meanwhile: run again, as oc does
		}
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

// missing are oc's warnings for a role, or a service account being added, that does
// not exist. (oc checks users and groups only where OpenShift's user API exists;
// there is none here.)
func (c RoleChange) missing(ctx context.Context, client kubernetes.Interface, binding *rbacv1.RoleBinding) []string {
	var warnings []string
	var err error
	if c.RoleKind() == "Role" {
		_, err = client.RbacV1().Roles(c.Namespace).Get(ctx, c.Role, metav1.GetOptions{})
	} else {
		_, err = client.RbacV1().ClusterRoles().Get(ctx, c.Role, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		warnings = append(warnings, fmt.Sprintf("role '%s' not found", c.Role))
	}
	for _, s := range addSubjects(binding.Subjects, c.Subjects)[len(binding.Subjects):] {
		if s.Kind != rbacv1.ServiceAccountKind {
			continue
		}
		if _, err := client.CoreV1().ServiceAccounts(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			warnings = append(warnings, fmt.Sprintf("%s '%s' not found", s.Kind, s.Name))
		}
	}
	return warnings
}

// Revoke takes the subjects from the named binding, or from every binding of the
// role; a binding left with no subject is deleted, as oc does.
func Revoke(ctx context.Context, client kubernetes.Interface, c RoleChange) (RoleResult, error) {
	if err := c.Validate(); err != nil {
		return RoleResult{}, err
	}
	bindings := c.store(client)
	var of []rbacv1.RoleBinding
	if c.Binding != "" {
		existing, err := bindings.Get(ctx, c.Binding)
		if err != nil {
			return RoleResult{}, err
		}
		if existing.RoleRef.Name != c.Role {
			return RoleResult{}, fmt.Errorf("rolebinding %s contains role %s, instead of role %s", c.Binding, existing.RoleRef.Name, c.Role)
		}
		if existing.RoleRef.Kind != c.RoleKind() {
			return RoleResult{}, fmt.Errorf("rolebinding %s contains role %s of kind %q, not %q", c.Binding, c.Role, existing.RoleRef.Kind, c.RoleKind())
		}
		of = []rbacv1.RoleBinding{*existing}
	} else {
		var err error
		if of, _, err = c.bindingsOfRole(ctx, bindings); err != nil {
			return RoleResult{}, err
		}
		if len(of) == 0 {
			return RoleResult{}, fmt.Errorf("unable to locate any %s for %s %q", c.bindingKind(), c.RoleKind(), c.Role)
		}
	}
	var res RoleResult
	for i := range of {
		kept, removed := removeSubjects(of[i].Subjects, c.Subjects)
		if removed > 0 {
			of[i].Subjects = kept
			res.Bindings = append(res.Bindings, of[i])
		}
	}
	if len(res.Bindings) == 0 {
		return RoleResult{}, ErrNotBound
	}
	if c.DryRun == ClientDryRun {
		return res, nil
	}
	for i := range res.Bindings {
		b := &res.Bindings[i]
		var err error
		if len(b.Subjects) > 0 || b.Annotations[rbacv1.AutoUpdateAnnotationKey] == "false" {
			err = bindings.Update(ctx, b, c.DryRun.options())
		} else {
			err = bindings.Delete(ctx, b.Name, c.DryRun.options())
			res.Deleted = append(res.Deleted, b.Name)
		}
		if err != nil {
			return res, err
		}
		if b.Annotations[rbacv1.AutoUpdateAnnotationKey] == "true" {
			kind := "rolebinding"
			if c.Cluster {
				kind = "clusterrolebinding"
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("Your changes may get lost whenever a master is restarted, unless you prevent reconciliation of this rolebinding using the following command: oc annotate %s.rbac %s '%s=false' --overwrite", kind, b.Name, rbacv1.AutoUpdateAnnotationKey))
		}
	}
	return res, nil
}

// bindingsOfRole are the bindings of the role, and all the bindings, in the API's
// order.
func (c RoleChange) bindingsOfRole(ctx context.Context, bindings bindingStore) (of, all []rbacv1.RoleBinding, err error) {
	all, err = bindings.List(ctx)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, b := range all {
		if b.RoleRef.Name == c.Role && b.RoleRef.Kind == c.RoleKind() {
			of = append(of, b)
		}
	}
	return of, all, nil
}

// addSubjects is have with the subjects of want it lacks appended, in want's order.
func addSubjects(have, want []rbacv1.Subject) []rbacv1.Subject {
	out := slices.Clone(have)
	for _, w := range want {
		if !slices.ContainsFunc(out, func(h rbacv1.Subject) bool { return sameSubject(h, w) }) {
			out = append(out, w)
		}
	}
	return out
}

// removeSubjects is have without the subjects of gone, and how many went.
func removeSubjects(have, gone []rbacv1.Subject) ([]rbacv1.Subject, int) {
	out := []rbacv1.Subject{}
	removed := 0
	for _, h := range have {
		if slices.ContainsFunc(gone, func(g rbacv1.Subject) bool { return sameSubject(h, g) }) {
			removed++
			continue
		}
		out = append(out, h)
	}
	return out, removed
}

func sameSubject(a, b rbacv1.Subject) bool {
	return a.Kind == b.Kind && a.Name == b.Name && a.Namespace == b.Namespace
}

// uniqueName is oc's: the role's name, then name-0 … name-99 while taken.
func uniqueName(base string, existing []rbacv1.RoleBinding) (string, error) {
	taken := func(n string) bool {
		return slices.ContainsFunc(existing, func(b rbacv1.RoleBinding) bool { return b.Name == n })
	}
	if !taken(base) {
		return base, nil
	}
	for i := range 100 {
		if name := fmt.Sprintf("%s-%d", base, i); !taken(name) {
			return name, nil
		}
	}
	return "", fmt.Errorf("unable to find a unique name for a role binding of %s", base)
}
