package services

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/auth/rbac/reconciliation"

	"pullgate.dev/pullgate/internal/imageapi"
	"pullgate.dev/pullgate/internal/leader"
	"pullgate.dev/pullgate/internal/registryauth"
	"pullgate.dev/pullgate/internal/registrykeys"
	"pullgate.dev/pullgate/internal/registryroles"
)

// User is the identity pullgate's services run as inside `pullgate up`, bound to
// ClusterRole() instead of system:masters.
const User = "pullgate:services"

// ClusterRole is what the registry, token service and controllers need: install the
// ImageStream CRD, keep the registry's cluster roles (escalate and bind, as the API
// server's own bootstrap does), read RBAC and namespaces, create the per-namespace
// role bindings and service accounts, keep the service accounts' registry pull
// secrets and their tokens (and the registry's shared keys, a Secret too), review
// tokens, write ImageStreams and hold the controllers' Lease and the prunes' lock.
func ClusterRole() *rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: User, Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get", "create", "update"}},
			{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"}, Verbs: []string{"get", "list", "watch", "create", "update", "escalate", "bind"}},
			{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"roles", "clusterrolebindings"}, Verbs: read},
			{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"rolebindings"}, Verbs: []string{"get", "list", "watch", "create"}},
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: read},
			{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
			{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
			{NonResourceURLs: []string{"/openid/v1/jwks"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update"}},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource, imageapi.Resource + "/status"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
			// The controllers' leader election and the prunes' lock; create cannot be
			// limited by name.
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{leader.ControllersLease, leader.PruneLease}, Verbs: []string{"get", "update"}},
		},
	}
}

// NodeTokenAudienceRole lets nodes request service account tokens for the registry's
// audience for the pods bound to them (NodeRestriction checks
// request-serviceaccounts-token-audience, KEP-4412): the node agent's credential for
// the integrated registry.
const NodeTokenAudienceRole = "pullgate:node-registry-token"

// NodeTokenAudience is the ClusterRole NodeTokenAudienceRole.
func NodeTokenAudience() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: NodeTokenAudienceRole, Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{registryauth.Service}, Verbs: []string{"request-serviceaccounts-token-audience"}}},
	}
}

// EnsureIdentity creates or completes ClusterRole() and binds it to User, and lets
// nodes request registry tokens; run it with an administrator's client.
func EnsureIdentity(ctx context.Context, admin kubernetes.Interface) error {
	if err := ensureBoundClusterRole(admin, ClusterRole(), rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: User}); err != nil {
		return err
	}
	return ensureBoundClusterRole(admin, NodeTokenAudience(), rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"})
}

// EnsureNamespace creates pullgate's own namespace, where the registry's shared keys
// and the controllers' Lease live; run it with an administrator's client.
func EnsureNamespace(ctx context.Context, admin kubernetes.Interface) error {
	_, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: registrykeys.Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", registrykeys.Namespace, err)
	}
	return nil
}

func ensureBoundClusterRole(admin kubernetes.Interface, role *rbacv1.ClusterRole, subject rbacv1.Subject) error {
	if err := registryroles.EnsureClusterRole(admin, role); err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := (&reconciliation.ReconcileRoleBindingOptions{
		RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: binding},
		Client:      reconciliation.ClusterRoleBindingClientAdapter{Client: admin.RbacV1().ClusterRoleBindings()},
		Confirm:     true,
	}).Run(); err != nil {
		return fmt.Errorf("clusterrolebinding %s: %w", binding.Name, err)
	}
	return nil
}
