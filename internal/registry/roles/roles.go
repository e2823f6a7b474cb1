// Package roles owns the RBAC of the integrated registry, with OpenShift's
// names and rules on pullgate's image API: the cluster roles system:image-puller,
// system:image-pusher, system:image-builder, registry-viewer, registry-editor and
// registry-admin, the aggregation of push into admin and edit, and the role
// bindings every namespace gets (system:image-pullers, system:image-builders,
// system:deployers).
package roles

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/auth/rbac/reconciliation"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// Role names, as in OpenShift.
const (
	ImagePuller  = "system:image-puller"
	ImagePusher  = "system:image-pusher"
	ImageBuilder = "system:image-builder"
	// ImagePullersBinding binds ImagePuller to every service account of a namespace.
	ImagePullersBinding  = "system:image-pullers"
	ImageBuildersBinding = "system:image-builders"
	DeployersBinding     = "system:deployers"
	Deployer             = "system:deployer"
)

const (
	layers  = imageapi.Resource + "/" + imageapi.LayersSubresource
	streams = imageapi.Resource
)

var (
	read  = []string{"get", "list", "watch"}
	write = []string{"create", "update", "patch", "delete", "deletecollection"}
)

func rule(verbs []string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: []string{imageapi.Group}, Resources: resources}
}

func clusterRole(name string, labels map[string]string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: mergeLabels(labels), Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}},
		Rules:      rules,
	}
}

func mergeLabels(extra map[string]string) map[string]string {
	out := map[string]string{"app.kubernetes.io/managed-by": "pullgate"}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// ClusterRoles are the registry's cluster roles.
func ClusterRoles() []*rbacv1.ClusterRole {
	pull := rule([]string{"get"}, layers)
	push := rule([]string{"get", "update"}, layers)
	return []*rbacv1.ClusterRole{
		clusterRole(ImagePuller, nil, pull),
		clusterRole(ImagePusher, nil, push),
		clusterRole(ImageBuilder, nil, push, rule(read, streams)),
		clusterRole(Deployer, nil, pull, rule(read, streams)),
		clusterRole("registry-viewer", nil, rule(read, streams), pull),
		clusterRole("registry-editor", nil, rule(append(read, write...), streams), push),
		clusterRole("registry-admin", nil, rule(append(read, write...), streams), push,
			rbacv1.PolicyRule{Verbs: append(read, write...), APIGroups: []string{rbacv1.GroupName}, Resources: []string{"rolebindings", "roles"}}),
		// Namespace admins and editors push; viewers pull (OpenShift's view can pull).
		clusterRole("pullgate:aggregate-to-admin", map[string]string{"rbac.authorization.k8s.io/aggregate-to-admin": "true"},
			rule(append(read, write...), streams), push),
		clusterRole("pullgate:aggregate-to-edit", map[string]string{"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
			rule(append(read, write...), streams), push),
		clusterRole("pullgate:aggregate-to-view", map[string]string{"rbac.authorization.k8s.io/aggregate-to-view": "true"},
			rule(read, streams), pull),
	}
}

// EnsureClusterRoles creates the registry's cluster roles or adds what they miss, as
// the API server reconciles its bootstrap roles: permissions a user added are kept,
// and a role annotated rbac.authorization.kubernetes.io/autoupdate=false is left alone.
func EnsureClusterRoles(ctx context.Context, client kubernetes.Interface) error {
	for _, role := range ClusterRoles() {
		if err := EnsureClusterRole(client, role); err != nil {
			return err
		}
	}
	return nil
}

// EnsureClusterRole creates role or adds the rules it misses, keeping rules a user
// added, and leaves a role annotated autoupdate=false alone.
func EnsureClusterRole(client kubernetes.Interface, role *rbacv1.ClusterRole) error {
	_, err := (&reconciliation.ReconcileRoleOptions{
		Role:    reconciliation.ClusterRoleRuleOwner{ClusterRole: role},
		Client:  reconciliation.ClusterRoleModifier{Client: client.RbacV1().ClusterRoles()},
		Confirm: true,
	}).Run()
	if err != nil {
		return fmt.Errorf("clusterrole %s: %w", role.Name, err)
	}
	return nil
}

// RoleBindings are the bindings every namespace gets, as in OpenShift.
func RoleBindings(namespace string) []*rbacv1.RoleBinding {
	binding := func(name, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: mergeLabels(nil)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
	}
	return []*rbacv1.RoleBinding{
		binding(ImagePullersBinding, ImagePuller, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:" + namespace}),
		binding(ImageBuildersBinding, ImageBuilder, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "builder", Namespace: namespace}),
		binding(DeployersBinding, Deployer, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "deployer", Namespace: namespace}),
	}
}
