package apiserver

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// --self-provisioners: the groups given are exactly the binding's subjects, again
// and again; none removes it.
func TestSetSelfProvisioners(t *testing.T) {
	ctx := context.Background()
	s := &Server{Client: fake.NewClientset()}
	for _, groups := range [][]string{{"system:authenticated"}, {"devs", "ops"}} {
		if err := s.SetSelfProvisioners(ctx, groups); err != nil {
			t.Fatal(err)
		}
		b, err := s.Client.RbacV1().ClusterRoleBindings().Get(ctx, SelfProvisionersBinding, metav1.GetOptions{})
		if err != nil || b.RoleRef.Name != "self-provisioner" || len(b.Subjects) != len(groups) || b.Subjects[0].Name != groups[0] || b.Subjects[0].Kind != "Group" {
			t.Fatalf("binding for %v: %+v %v", groups, b, err)
		}
	}
	if err := s.SetSelfProvisioners(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.RbacV1().ClusterRoleBindings().Get(ctx, SelfProvisionersBinding, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("--self-provisioners= left the binding: %v", err)
	}
}

// The shared namespace holds the registry's stream, readable by every authenticated
// user; installing it twice is fine.
func TestInstallShared(t *testing.T) {
	ctx := context.Background()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{imageapi.GVR: "ImageStreamList"})
	s := &Server{Client: fake.NewClientset(), Dynamic: dyn}
	for range 2 {
		if err := s.InstallShared(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.streams().Read(ctx, SharedNamespace, RegistryStream); err != nil {
		t.Errorf("stream %s/%s: %v", SharedNamespace, RegistryStream, err)
	}
	b, err := s.Client.RbacV1().RoleBindings(SharedNamespace).Get(ctx, "shared-resource-viewers", metav1.GetOptions{})
	if err != nil || b.Subjects[0].Name != "system:authenticated" {
		t.Errorf("binding: %+v %v", b, err)
	}
}
