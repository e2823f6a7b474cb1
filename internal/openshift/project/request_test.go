package project

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Create makes the namespace with OpenShift's annotations and binds the requester
// (a service account as one) to admin; a taken or reserved name is refused with the
// API's error and nothing is made.
func TestCreate(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	ns, err := Create(ctx, client, Request{Name: "team-a", DisplayName: "Team A", Description: "d"}, "system:serviceaccount:ci:robot")
	if err != nil {
		t.Fatal(err)
	}
	if ns.Annotations[RequesterAnnotation] != "system:serviceaccount:ci:robot" || ns.Annotations[DisplayNameAnnotation] != "Team A" {
		t.Errorf("annotations %v", ns.Annotations)
	}
	b, err := client.RbacV1().RoleBindings("team-a").Get(ctx, "admin", metav1.GetOptions{})
	if err != nil || b.RoleRef.Name != "admin" || b.Subjects[0] != (rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "ci", Name: "robot"}) {
		t.Errorf("admin binding %+v %v", b, err)
	}
	if _, err := Create(ctx, client, Request{Name: "team-a"}, "alice"); !apierrors.IsAlreadyExists(err) || err.Error() != `project.project.openshift.io "team-a" already exists` {
		t.Errorf("an existing project: %v", err)
	}
	if _, err := Create(ctx, client, Request{Name: "kube-evil"}, "alice"); !apierrors.IsForbidden(err) {
		t.Errorf("a reserved name: %v, want Forbidden", err)
	}
	if _, err := Create(ctx, client, Request{Name: "Bad_Name"}, "alice"); !apierrors.IsInvalid(err) {
		t.Errorf("a name that is no DNS label: %v, want Invalid", err)
	}
	if list, _ := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); len(list.Items) != 1 {
		t.Errorf("%d namespaces, want 1", len(list.Items))
	}
}

// Submit sends a ProjectRequest with the names OpenShift's API reads, and refuses a
// reserved name before sending.
func TestSubmit(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{ProjectRequests: "ProjectRequestList"})
	var sent *unstructured.Unstructured
	client.PrependReactor("create", "projectrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sent = a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		return true, sent, nil
	})
	name, err := Submit(context.Background(), client, Request{Name: "team-b", DisplayName: "Team B"})
	if err != nil || name != "team-b" {
		t.Fatalf("submit: %q %v", name, err)
	}
	if sent.GetKind() != "ProjectRequest" || sent.Object["displayName"] != "Team B" {
		t.Errorf("sent %v", sent.Object)
	}
	sent = nil
	if _, err := Submit(context.Background(), client, Request{Name: "openshift-x"}); !apierrors.IsForbidden(err) || sent != nil {
		t.Errorf("a reserved name: %v (sent %v)", err, sent)
	}
	// A cluster without the OpenShift API: said so, with the command that works.
	bare := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{ProjectRequests: "ProjectRequestList"})
	bare.PrependReactor("create", "projectrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(ProjectRequests.GroupResource(), "")
	})
	if _, err := Submit(context.Background(), bare, Request{Name: "team-c"}); err == nil || !strings.Contains(err.Error(), "does not serve projectrequests.project.openshift.io") || !strings.Contains(err.Error(), "kubectl create namespace team-c") {
		t.Errorf("no OpenShift API: %v", err)
	}
}
