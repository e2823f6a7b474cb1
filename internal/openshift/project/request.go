package project

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Request is a ProjectRequest (project.openshift.io/v1): what `oc new-project` and
// `pullgate new-project` send.
type Request struct {
	Name        string
	DisplayName string
	Description string
}

// The annotations OpenShift puts on a requested project's namespace.
const (
	DisplayNameAnnotation = "openshift.io/display-name"
	DescriptionAnnotation = "openshift.io/description"
	RequesterAnnotation   = "openshift.io/requester"
)

var (
	// ProjectRequests is the resource a user creates to ask for a project.
	ProjectRequests    = schema.GroupVersionResource{Group: "project.openshift.io", Version: "v1", Resource: "projectrequests"}
	projectRequestKind = schema.GroupKind{Group: "project.openshift.io", Kind: "ProjectRequest"}
)

// Validate checks the name, with the API's error: Invalid for a name that is no DNS
// label, Forbidden for a reserved one (as OpenShift answers).
func (r Request) Validate() error {
	if errs := validation.IsDNS1123Label(r.Name); len(errs) > 0 {
		return apierrors.NewInvalid(projectRequestKind, r.Name, field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), r.Name, strings.Join(errs, "; "))})
	}
	if err := ValidateName(r.Name); err != nil {
		return apierrors.NewForbidden(schema.GroupResource{Group: ProjectRequests.Group, Resource: ProjectRequests.Resource}, r.Name, err)
	}
	return nil
}

// Create makes the project requested by requester (a user name): the namespace with
// OpenShift's annotations and the requester bound to the admin role in it, as
// OpenShift's default project template does. pullgate's controllers add the rest
// (builder, deployer, the registry's role bindings, every account's pull secret).
// It is the server side of a ProjectRequest: the caller has checked that requester
// may request projects.
func Create(ctx context.Context, client kubernetes.Interface, r Request, requester string) (*corev1.Namespace, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Name, Annotations: map[string]string{
		DisplayNameAnnotation: r.DisplayName, DescriptionAnnotation: r.Description, RequesterAnnotation: requester}}}
	created, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// OpenShift's words: project.project.openshift.io "NAME" already exists.
		return nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: ProjectRequests.Group, Resource: "project"}, r.Name)
	}
	if err != nil {
		return nil, err
	}
	_, err = client.RbacV1().RoleBindings(r.Name).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "admin"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects: []rbacv1.Subject{Subject(requester, false)}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("project %s: binding its requester %s to admin: %w", r.Name, requester, err)
	}
	return created, nil
}

// Submit sends r as a ProjectRequest with the user's client, as `oc new-project`
// does: the API server checks the user may request projects, and the OpenShift API
// (Create) makes it. It returns the project's name as created.
func Submit(ctx context.Context, client dynamic.Interface, r Request) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": ProjectRequests.GroupVersion().String(), "kind": projectRequestKind.Kind,
		"metadata": map[string]any{"name": r.Name}, "displayName": r.DisplayName, "description": r.Description,
	}}
	created, err := client.Resource(ProjectRequests).Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) && created == nil {
		// The resource itself is missing: no aggregated OpenShift API in this cluster.
		return "", fmt.Errorf("project %s not requested: this cluster does not serve %s (pullgate's OpenShift API, which pullgate up and deploy/ run); an administrator can make the namespace with: kubectl create namespace %s", r.Name, ProjectRequests.GroupResource(), r.Name)
	}
	if err != nil {
		return "", err
	}
	return created.GetName(), nil
}
