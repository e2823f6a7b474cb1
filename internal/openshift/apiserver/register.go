package apiserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// ServiceNamespace and ServiceName are the Service the APIServices name; the
// serving certificate is for ServiceName.ServiceNamespace.svc, which is what the
// aggregation layer checks.
const (
	ServiceNamespace = "pullgate-system"
	ServiceName      = "openshift-apiserver"
)

var apiServices = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// Register points the aggregation layer at this server: a Service of type
// ExternalName for host (up has no kube-proxy: the aggregation layer resolves an
// ExternalName Service to host:port), an APIService per group (the CA bundle that signed the serving
// certificate), and the cluster roles that let users reach the resources: every
// authenticated user may list and get projects and ask whether it may request one
// (OpenShift's basic-user); view, edit and admin read image streams and admin runs
// access reviews; view, edit and admin read, edit and import image streams; the
// image API's account; self-provisioner creates projects (bound by up
// --self-provisioners).
func Register(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, host string, port int, caBundle []byte) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ServiceNamespace, Name: ServiceName},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: host, Ports: []corev1.ServicePort{{Name: "https", Port: int32(port)}}}}
	if err := createOrUpdate(ctx, client.CoreV1().Services(ServiceNamespace).Create, client.CoreV1().Services(ServiceNamespace).Get, func(old *corev1.Service) (*corev1.Service, error) {
		old.Spec = svc.Spec
		return client.CoreV1().Services(ServiceNamespace).Update(ctx, old, metav1.UpdateOptions{})
	}, svc); err != nil {
		return fmt.Errorf("service %s/%s: %w", ServiceNamespace, ServiceName, err)
	}
	for _, gv := range GroupVersions() {
		name := gv.Version + "." + gv.Group
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": name, "labels": map[string]any{"app.kubernetes.io/part-of": "pullgate"}},
			"spec": map[string]any{
				"group": gv.Group, "version": gv.Version, "caBundle": caBundle,
				"groupPriorityMinimum": groupPriority, "versionPriority": int64(15),
				"service": map[string]any{"namespace": ServiceNamespace, "name": ServiceName, "port": int64(port)},
			},
		}}
		res := dyn.Resource(apiServices)
		existing, err := res.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = res.Create(ctx, obj, metav1.CreateOptions{})
		case err == nil:
			obj.SetResourceVersion(existing.GetResourceVersion())
			_, err = res.Update(ctx, obj, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("apiservice %s: %w", name, err)
		}
	}
	for _, role := range clusterRoles() {
		if err := createOrUpdate(ctx, client.RbacV1().ClusterRoles().Create, client.RbacV1().ClusterRoles().Get, func(old *rbacv1.ClusterRole) (*rbacv1.ClusterRole, error) {
			old.Rules, old.Labels = role.Rules, role.Labels
			return client.RbacV1().ClusterRoles().Update(ctx, old, metav1.UpdateOptions{})
		}, role); err != nil {
			return fmt.Errorf("clusterrole %s: %w", role.Name, err)
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: images.AccountNamespace, Name: images.AccountName}}
	if _, err := client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("serviceaccount %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	account := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: images.AccountRole},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: images.AccountRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}}}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, account, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("clusterrolebinding %s: %w", account.Name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pullgate:openshift-basic-users"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pullgate:openshift-basic-user"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}}}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("clusterrolebinding %s: %w", binding.Name, err)
	}
	return nil
}

// groupPriority is OpenShift's for its API groups: above a CRD's (1000), so that
// `kubectl get imagestreams` and `oc set image-lookup app` mean image.openshift.io,
// as on OpenShift, where pullgate's own group serves the same resource name.
const groupPriority = int64(9900)

func clusterRoles() []*rbacv1.ClusterRole {
	aggregate := func(to string) map[string]string {
		return map[string]string{"rbac.authorization.k8s.io/aggregate-to-" + to: "true"}
	}
	return []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: "pullgate:openshift-basic-user"}, Rules: []rbacv1.PolicyRule{
			// The API server passes these on; pullgate decides per project (a
			// project's own RBAC), as OpenShift's project API does.
			{APIGroups: []string{"project.openshift.io"}, Resources: []string{"projects"}, Verbs: []string{"get", "list", "delete"}},
			{APIGroups: []string{"project.openshift.io"}, Resources: []string{"projectrequests"}, Verbs: []string{"list"}},
			// Reviews about oneself; about others, pullgate asks for more.
			{APIGroups: []string{"authorization.openshift.io"}, Resources: []string{"subjectaccessreviews", "localsubjectaccessreviews"}, Verbs: []string{"create"}},
		}},
		// A project's admin may delete it, as OpenShift's admin role allows (in its
		// legacy group too, as OpenShift's roles list it: the legacy group is what
		// pullgate checks, which the pass-through above never grants).
		{ObjectMeta: metav1.ObjectMeta{Name: "pullgate:openshift-project-admin", Labels: aggregate("admin")}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"", "project.openshift.io"}, Resources: []string{"projects"}, Verbs: []string{"delete"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "self-provisioner"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"project.openshift.io"}, Resources: []string{"projectrequests"}, Verbs: []string{"create"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pullgate:openshift-image-view", Labels: aggregate("view")}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams", "imagestreamtags", "imagestreamimages"}, Verbs: []string{"get", "list", "watch"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pullgate:openshift-image-edit", Labels: aggregate("edit")}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams"}, Verbs: []string{"create", "update", "patch", "delete"}},
			{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreamtags"}, Verbs: []string{"create", "update", "delete"}},
			{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreamimports"}, Verbs: []string{"create"}},
		}},
		// The image API's own account, at the registry only: pull any stream to copy
		// from it, push and delete tags of any stream to copy into it (oc tag). Its
		// tokens are bound to the registry's audience: the API server refuses them.
		{ObjectMeta: metav1.ObjectMeta{Name: images.AccountRole}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource + "/" + imageapi.LayersSubresource}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{imageapi.Group}, Resources: []string{imageapi.Resource}, Verbs: []string{"delete"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "pullgate:openshift-access-review", Labels: aggregate("admin")}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"authorization.openshift.io"}, Resources: []string{"localresourceaccessreviews"}, Verbs: []string{"create"}},
		}},
	}
}

// createOrUpdate creates obj, or updates the one there.
func createOrUpdate[T interface{ GetName() string }](ctx context.Context,
	create func(context.Context, T, metav1.CreateOptions) (T, error),
	get func(context.Context, string, metav1.GetOptions) (T, error),
	update func(T) (T, error), obj T) error {
	_, err := create(ctx, obj, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	old, err := get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	_, err = update(old)
	return err
}
