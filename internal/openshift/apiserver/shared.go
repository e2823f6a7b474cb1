package apiserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// SharedNamespace is OpenShift's namespace of image streams every user may read
// (its samples): oc registry info and oc registry login look there when the
// current project has no stream.
const SharedNamespace = "openshift"

// RegistryStream is the stream pullgate keeps in SharedNamespace so that it is
// never empty: it names the integrated registry and holds nothing.
const RegistryStream = "pullgate-registry"

// InstallShared makes SharedNamespace, lets every authenticated user read (and
// pull) its streams as OpenShift's shared-resource-viewer does, and keeps
// RegistryStream there.
func (s *Server) InstallShared(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SharedNamespace}}
	if _, err := s.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", SharedNamespace, err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: SharedNamespace, Name: "shared-resource-viewer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams", "imagestreamtags", "imagestreamimages"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource, imageapi.Resource + "/" + imageapi.LayersSubresource}, Verbs: []string{"get", "list", "watch"}},
	}}
	roles := s.Client.RbacV1().Roles(SharedNamespace)
	if err := createOrUpdate(ctx, roles.Create, roles.Get, func(old *rbacv1.Role) (*rbacv1.Role, error) {
		old.Rules = role.Rules
		return roles.Update(ctx, old, metav1.UpdateOptions{})
	}, role); err != nil {
		return fmt.Errorf("role %s/%s: %w", SharedNamespace, role.Name, err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: SharedNamespace, Name: "shared-resource-viewers"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}}}
	if _, err := s.Client.RbacV1().RoleBindings(SharedNamespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("rolebinding %s/%s: %w", SharedNamespace, binding.Name, err)
	}
	_, err := s.streams().Create(ctx, SharedNamespace, metav1.ObjectMeta{Name: RegistryStream, Annotations: map[string]string{
		"openshift.io/description": "Names the integrated registry for oc registry info and oc registry login in any project; it holds no image.",
	}}, imageapi.ImageStreamSpec{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("imagestream %s/%s: %w", SharedNamespace, RegistryStream, err)
	}
	return nil
}

// SelfProvisionersBinding is the ClusterRoleBinding that says who may make their
// own projects (oc new-project), as on OpenShift.
const SelfProvisionersBinding = "self-provisioners"

// SetSelfProvisioners makes groups exactly those bound to self-provisioner; none
// removes the binding (only administrators make projects).
func (s *Server) SetSelfProvisioners(ctx context.Context, groups []string) error {
	bindings := s.Client.RbacV1().ClusterRoleBindings()
	if len(groups) == 0 {
		if err := bindings.Delete(ctx, SelfProvisionersBinding, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("clusterrolebinding %s: %w", SelfProvisionersBinding, err)
		}
		return nil
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: SelfProvisionersBinding},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "self-provisioner"}}
	for _, g := range groups {
		binding.Subjects = append(binding.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: g})
	}
	return createOrUpdate(ctx, bindings.Create, bindings.Get, func(old *rbacv1.ClusterRoleBinding) (*rbacv1.ClusterRoleBinding, error) {
		old.Subjects = binding.Subjects
		return bindings.Update(ctx, old, metav1.UpdateOptions{})
	}, binding)
}
