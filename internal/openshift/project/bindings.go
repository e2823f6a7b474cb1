package project

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// bindingStore reads and writes a namespace's role bindings, or the cluster's role
// bindings held as RoleBindings (their fields are the same), as oc's
// roleBindingAbstraction does, so that Grant and Revoke are one algorithm for both.
type bindingStore interface {
	Get(ctx context.Context, name string) (*rbacv1.RoleBinding, error)
	List(ctx context.Context) ([]rbacv1.RoleBinding, error)
	Create(ctx context.Context, b *rbacv1.RoleBinding, dryRun []string) error
	Update(ctx context.Context, b *rbacv1.RoleBinding, dryRun []string) error
	Delete(ctx context.Context, name string, dryRun []string) error
}

func (c RoleChange) store(client kubernetes.Interface) bindingStore {
	if c.Cluster {
		return clusterBindings{client}
	}
	return namespaceBindings{client, c.Namespace}
}

type namespaceBindings struct {
	client    kubernetes.Interface
	namespace string
}

func (n namespaceBindings) Get(ctx context.Context, name string) (*rbacv1.RoleBinding, error) {
	return n.client.RbacV1().RoleBindings(n.namespace).Get(ctx, name, metav1.GetOptions{})
}

func (n namespaceBindings) List(ctx context.Context) ([]rbacv1.RoleBinding, error) {
	list, err := n.client.RbacV1().RoleBindings(n.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (n namespaceBindings) Create(ctx context.Context, b *rbacv1.RoleBinding, dryRun []string) error {
	_, err := n.client.RbacV1().RoleBindings(n.namespace).Create(ctx, b, metav1.CreateOptions{DryRun: dryRun})
	return err
}

func (n namespaceBindings) Update(ctx context.Context, b *rbacv1.RoleBinding, dryRun []string) error {
	_, err := n.client.RbacV1().RoleBindings(n.namespace).Update(ctx, b, metav1.UpdateOptions{DryRun: dryRun})
	return err
}

func (n namespaceBindings) Delete(ctx context.Context, name string, dryRun []string) error {
	return n.client.RbacV1().RoleBindings(n.namespace).Delete(ctx, name, metav1.DeleteOptions{DryRun: dryRun})
}

type clusterBindings struct{ client kubernetes.Interface }

func asRoleBinding(b *rbacv1.ClusterRoleBinding) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: b.ObjectMeta, Subjects: b.Subjects, RoleRef: b.RoleRef}
}

func asClusterRoleBinding(b *rbacv1.RoleBinding) *rbacv1.ClusterRoleBinding {
	meta := b.ObjectMeta
	meta.Namespace = ""
	return &rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: b.Subjects, RoleRef: b.RoleRef}
}

func (c clusterBindings) Get(ctx context.Context, name string) (*rbacv1.RoleBinding, error) {
	b, err := c.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return asRoleBinding(b), nil
}

func (c clusterBindings) List(ctx context.Context) ([]rbacv1.RoleBinding, error) {
	list, err := c.client.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]rbacv1.RoleBinding, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, *asRoleBinding(&list.Items[i]))
	}
	return out, nil
}

func (c clusterBindings) Create(ctx context.Context, b *rbacv1.RoleBinding, dryRun []string) error {
	_, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, asClusterRoleBinding(b), metav1.CreateOptions{DryRun: dryRun})
	return err
}

func (c clusterBindings) Update(ctx context.Context, b *rbacv1.RoleBinding, dryRun []string) error {
	_, err := c.client.RbacV1().ClusterRoleBindings().Update(ctx, asClusterRoleBinding(b), metav1.UpdateOptions{DryRun: dryRun})
	return err
}

func (c clusterBindings) Delete(ctx context.Context, name string, dryRun []string) error {
	return c.client.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{DryRun: dryRun})
}
