package project

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Link puts a secret on imagePullSecrets (pull) or secrets (mount) once; missing
// secrets are reported and skipped; Unlink removes from both, a deleted secret by name.
func TestLinkAndUnlink(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "default"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "pull"}})
	c := LinkChange{Namespace: "b", ServiceAccount: "default", Secrets: []string{"secret/pull", "missing"}, ForPull: true}
	res, err := Link(ctx, client, c)
	if err != nil || !res.Changed || !slices.Equal(res.NotFound, []string{"missing"}) {
		t.Fatalf("link: %+v %v", res, err)
	}
	if names := res.ServiceAccount.ImagePullSecrets; len(names) != 1 || names[0].Name != "pull" || len(res.ServiceAccount.Secrets) != 0 {
		t.Errorf("account after link: %+v", res.ServiceAccount)
	}
	if res, err := Link(ctx, client, c); err == nil || err.Error() != "Some secrets could not be linked" || res.Changed {
		t.Errorf("link again: %+v %v", res, err)
	}
	if _, err := Link(ctx, client, LinkChange{Namespace: "b", ServiceAccount: "default", Secrets: []string{"configmap/pull"}}); err == nil {
		t.Error("configmap/pull was linked")
	}
	if _, err := Link(ctx, client, LinkChange{Namespace: "b", ServiceAccount: "nobody", Secrets: []string{"pull"}}); err == nil {
		t.Error("a missing account was linked")
	}
	if err := client.CoreV1().Secrets("b").Delete(ctx, "pull", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = Unlink(ctx, client, LinkChange{Namespace: "b", ServiceAccount: "default", Secrets: []string{"pull"}})
	if err == nil || err.Error() != "Unlinked deleted secrets from b/default service account" || len(res.ServiceAccount.ImagePullSecrets) != 0 {
		t.Fatalf("unlink a deleted secret: %+v %v", res, err)
	}
	if _, err := Unlink(ctx, client, LinkChange{Namespace: "b", ServiceAccount: "default", Secrets: []string{"pull"}}); err == nil || err.Error() != "No valid secrets found or secrets not linked to service account" {
		t.Errorf("unlink again: %v", err)
	}
}

// An account changed between the read and the update (pullgate's controller linking
// its own pull secret in a new namespace) is read again: the link is made on it and
// nothing of the other change is lost.
func TestLinkRetriesAConflict(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "default"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "pull"}})
	conflicts := 0
	client.PrependReactor("update", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		// The controller's write lands first.
		sa, _ := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("serviceaccounts"), "b", "default")
		linked := sa.(*corev1.ServiceAccount).DeepCopy()
		linked.ImagePullSecrets = append(linked.ImagePullSecrets, corev1.LocalObjectReference{Name: "default-dockercfg"})
		if err := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("serviceaccounts"), linked, "b"); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewConflict(corev1.Resource("serviceaccounts"), "default", errors.New("the object has been modified"))
	})
	res, err := Link(ctx, client, LinkChange{Namespace: "b", ServiceAccount: "default", Secrets: []string{"pull"}, ForPull: true})
	if err != nil || conflicts != 1 {
		t.Fatalf("link after a conflict: %v (conflicts %d)", err, conflicts)
	}
	var names []string
	for _, r := range res.ServiceAccount.ImagePullSecrets {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"default-dockercfg", "pull"}) {
		t.Errorf("imagePullSecrets after the retry: %v, want the controller's and the user's", names)
	}
}
