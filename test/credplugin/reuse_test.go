package credplugin

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"pullgate.dev/pullgate/internal/harness"
)

// A namespace deleted and made again under the same name does not inherit the node's
// cache: its pod names the same image, with the same service account name, and is
// refused as the registry refuses it (NAME_UNKNOWN), not given the old tenant's image
// as "already present on machine". Pull records name the account by UID, and the
// node asks the ImageStream whether the registry still serves the digest there.
func TestRecreatedNamespaceDoesNotGetTheOldTenantsCachedImage(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	ns := "reuse-" + rand.String(6)
	create := func() {
		t.Helper()
		if _, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
			_, err := env.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err == nil
		}) {
			t.Fatalf("no default service account in %s", ns)
		}
	}
	t.Cleanup(func() { _ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	pod := func(name, image string) {
		t.Helper()
		if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	create()
	token, err := env.Account(ctx, ns, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	image := env.RegistryHost + "/" + ns + "/app:v1"
	if _, err := harness.PushFile(ctx, dockerConfig(t, token), image, []byte("the old tenant's image")); err != nil {
		t.Fatal(err)
	}
	pod("first", image)
	env.WaitForImagesPulled(t, ctx, ns, "first", corev1.ConditionTrue, time.Minute)

	if err := env.Admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 2*time.Minute, func(ctx context.Context) bool {
		_, err := env.Admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}) {
		t.Fatalf("namespace %s was not deleted", ns)
	}
	create()
	pod("second", image)
	env.WaitForImagesPulled(t, ctx, ns, "second", corev1.ConditionFalse, time.Minute)
	got, err := env.Admin.CoreV1().Pods(ns).Get(ctx, "second", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.ContainerStatuses) == 0 || got.Status.ContainerStatuses[0].State.Waiting == nil ||
		!strings.Contains(got.Status.ContainerStatuses[0].State.Waiting.Message, "NAME_UNKNOWN") {
		t.Errorf("the new tenant's pod: %+v, want waiting with the registry's NAME_UNKNOWN", got.Status.ContainerStatuses)
	}
}
