package identities

import (
	"context"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-helpers/auth/rbac/reconciliation"

	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/keys"
	"pullgate.dev/pullgate/internal/registry/roles"
)

// Subject says who an identity is in one kind of install: up's users, or deploy/'s
// service accounts.
type Subject func(Identity) rbacv1.Subject

// AsUser is an identity inside `pullgate up`: its client certificate's user.
func AsUser(i Identity) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: i.User}
}

// AsServiceAccount is an identity installed from deploy/: its ServiceAccount.
func AsServiceAccount(i Identity) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: i.ServiceAccount, Namespace: keys.Namespace}
}

// Access is every role, binding and policy that gives pullgate's identities what they
// may do, bound to subject: what Install writes and deploy/generated.yaml holds.
func Access(subject Subject) []runtime.Object {
	var out []runtime.Object
	for _, id := range Identities() {
		out = append(out, id.ClusterRole, clusterRoleBinding(id.ClusterRole.Name, subject(id)))
		for _, r := range id.Roles {
			out = append(out, r, roleBinding(r, subject(id)))
		}
	}
	out = append(out, Node(), clusterRoleBinding(NodeRole, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}))
	policy, binding := Admission()
	return append(out, policy, binding, FlowSchema())
}

// bindingName is a binding's name: the role's for up's users, the role's with
// ":serviceaccount" for deploy/'s service accounts. The roles are the same objects in
// both installs, the bindings not: deploy/ applied where up runs (up --node kubelet)
// adds its own bindings and takes none of up's away.
func bindingName(role string, subject rbacv1.Subject) string {
	if subject.Kind == rbacv1.ServiceAccountKind {
		return role + ":serviceaccount"
	}
	return role
}

func clusterRoleBinding(role string, subject rbacv1.Subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: bindingName(role, subject), Annotations: map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{subject},
	}
}

func roleBinding(role *rbacv1.Role, subject rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: bindingName(role.Name, subject), Namespace: role.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject},
	}
}

// Install makes what pullgate needs exist in the cluster, idempotently, with an
// administrator's client: pullgate's namespace, the ImageStream CRD, the registry's
// cluster roles, and Access(AsUser) — pullgate up's installer. (On a cluster,
// deploy/ holds the same objects.) The components themselves install nothing.
func Install(ctx context.Context, adminConfig *rest.Config) error {
	admin, err := kubernetes.NewForConfig(adminConfig)
	if err != nil {
		return err
	}
	_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: keys.Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", keys.Namespace, err)
	}
	if err := imageapi.EnsureCRD(ctx, adminConfig); err != nil {
		return err
	}
	if err := roles.EnsureClusterRoles(ctx, admin); err != nil {
		return err
	}
	for _, obj := range Access(AsUser) {
		if err := ensure(ctx, admin, obj); err != nil {
			return err
		}
	}
	// Before each component had its own identity, one held all their rights.
	for _, old := range []string{"pullgate:services", "pullgate:node-registry-token"} {
		if err := admin.RbacV1().ClusterRoleBindings().Delete(ctx, old, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("clusterrolebinding %s (no longer used): %w", old, err)
		}
		if err := admin.RbacV1().ClusterRoles().Delete(ctx, old, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("clusterrole %s (no longer used): %w", old, err)
		}
	}
	return nil
}

// ensure creates or reconciles one object of Access.
func ensure(ctx context.Context, admin kubernetes.Interface, obj runtime.Object) error {
	switch o := obj.(type) {
	case *rbacv1.ClusterRole:
		return roles.EnsureClusterRole(admin, o)
	case *rbacv1.ClusterRoleBinding:
		_, err := (&reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: o},
			Client:      reconciliation.ClusterRoleBindingClientAdapter{Client: admin.RbacV1().ClusterRoleBindings()},
			Confirm:     true, RemoveExtraSubjects: true,
		}).Run()
		return wrap(err, "clusterrolebinding", o.Name)
	case *rbacv1.Role:
		_, err := (&reconciliation.ReconcileRoleOptions{
			Role: reconciliation.RoleRuleOwner{Role: o}, Client: reconciliation.RoleModifier{Client: admin.RbacV1(), NamespaceClient: admin.CoreV1().Namespaces()},
			Confirm: true, RemoveExtraPermissions: true,
		}).Run()
		return wrap(err, "role", o.Namespace+"/"+o.Name)
	case *rbacv1.RoleBinding:
		_, err := (&reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: o},
			Client:      reconciliation.RoleBindingClientAdapter{Client: admin.RbacV1(), NamespaceClient: admin.CoreV1().Namespaces()},
			Confirm:     true, RemoveExtraSubjects: true,
		}).Run()
		return wrap(err, "rolebinding", o.Namespace+"/"+o.Name)
	case *admissionv1.ValidatingAdmissionPolicy:
		c := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies()
		return wrap(createOrReplace(ctx, o, c.Create, c.Get, func(ctx context.Context, existing *admissionv1.ValidatingAdmissionPolicy) error {
			existing.Spec = o.Spec
			_, err := c.Update(ctx, existing, metav1.UpdateOptions{})
			return err
		}), "validatingadmissionpolicy", o.Name)
	case *flowcontrolv1.FlowSchema:
		c := admin.FlowcontrolV1().FlowSchemas()
		return wrap(createOrReplace(ctx, o, c.Create, c.Get, func(ctx context.Context, existing *flowcontrolv1.FlowSchema) error {
			existing.Spec = o.Spec
			_, err := c.Update(ctx, existing, metav1.UpdateOptions{})
			return err
		}), "flowschema", o.Name)
	case *admissionv1.ValidatingAdmissionPolicyBinding:
		c := admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
		return wrap(createOrReplace(ctx, o, c.Create, c.Get, func(ctx context.Context, existing *admissionv1.ValidatingAdmissionPolicyBinding) error {
			existing.Spec = o.Spec
			_, err := c.Update(ctx, existing, metav1.UpdateOptions{})
			return err
		}), "validatingadmissionpolicybinding", o.Name)
	}
	return fmt.Errorf("install: no way to write %T", obj)
}

func createOrReplace[T metav1.Object](ctx context.Context, want T,
	create func(context.Context, T, metav1.CreateOptions) (T, error),
	get func(context.Context, string, metav1.GetOptions) (T, error),
	update func(context.Context, T) error) error {
	_, err := create(ctx, want, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing, err := get(ctx, want.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	return update(ctx, existing)
}

func wrap(err error, kind, name string) error {
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, name, err)
	}
	return nil
}
