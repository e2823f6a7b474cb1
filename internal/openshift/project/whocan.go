package project

import (
	"context"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// Access is who may do something: user names (service accounts as
// system:serviceaccount:NS:NAME) and group names, each sorted, once.
type Access struct {
	Users, Groups []string
}

// RBAC answers who may do a request: rbacauthz.Authorizer from informers, or
// ListedRBAC read once.
type RBAC interface {
	WhoCan(req rbacauthz.Request) []rbacauthz.Grant
}

// WhoCan is every user and group RBAC lets do req (oc policy who-can).
func WhoCan(rbac RBAC, req rbacauthz.Request) Access {
	a := Access{Users: []string{}, Groups: []string{}}
	for _, g := range rbac.WhoCan(req) {
		if g.Subject.Kind == rbacv1.GroupKind {
			a.Groups = append(a.Groups, g.Subject.Name)
		} else {
			a.Users = append(a.Users, g.UserName())
		}
	}
	slices.Sort(a.Users)
	slices.Sort(a.Groups)
	a.Users, a.Groups = slices.Compact(a.Users), slices.Compact(a.Groups)
	return a
}

// ListedRBAC reads the cluster's bindings and roles and namespace's with client, once
// (for a command that asks one question; a server keeps informers instead).
func ListedRBAC(ctx context.Context, client kubernetes.Interface, namespace string) (rbacauthz.Bindings, error) {
	rbac := client.RbacV1()
	crbs, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return rbacauthz.Bindings{}, err
	}
	rbs, err := rbac.RoleBindings(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return rbacauthz.Bindings{}, err
	}
	clusterRoles, err := rbac.ClusterRoles().List(ctx, metav1.ListOptions{})
	if err != nil {
		return rbacauthz.Bindings{}, err
	}
	roles, err := rbac.Roles(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return rbacauthz.Bindings{}, err
	}
	b := rbacauthz.Bindings{RulesOf: func(ref rbacv1.RoleRef, _ string) []rbacv1.PolicyRule {
		if ref.Kind == "Role" {
			if i := slices.IndexFunc(roles.Items, func(r rbacv1.Role) bool { return r.Name == ref.Name }); i >= 0 {
				return roles.Items[i].Rules
			}
			return nil
		}
		if i := slices.IndexFunc(clusterRoles.Items, func(r rbacv1.ClusterRole) bool { return r.Name == ref.Name }); i >= 0 {
			return clusterRoles.Items[i].Rules
		}
		return nil
	}}
	for i := range crbs.Items {
		b.ClusterRoleBindings = append(b.ClusterRoleBindings, &crbs.Items[i])
	}
	for i := range rbs.Items {
		b.RoleBindings = append(b.RoleBindings, &rbs.Items[i])
	}
	return b, nil
}

// DecidingGroup is the API group RBAC decides a resource of group in. OpenShift's
// image streams (image.openshift.io, or OpenShift's legacy "" group) are pullgate's,
// decided by the registry on image.pullgate.dev; OpenShift's clients still name
// projects in the legacy group.
func DecidingGroup(group, resource string) string {
	switch {
	case resource == imageapi.Resource && (group == "" || group == "image.openshift.io"):
		return imageapi.Group
	case group == "" && (resource == "projects" || resource == "projectrequests"):
		return "project.openshift.io"
	}
	return group
}
