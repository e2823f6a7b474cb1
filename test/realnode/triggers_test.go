package realnode

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/harness"
)

// On the real kubelet, a Deployment created as oc new-app writes it (image " ",
// following app:v1) runs the tag's image, and a push of a new app:v1 rolls it: the
// new pod runs the new digest, pulled by containerd from the integrated registry.
func TestTriggeredDeploymentRollsOnTheRealKubelet(t *testing.T) {
	needRealNode(t)
	e := kubeletEnv
	ctx := harness.Context(t, 4*time.Minute)
	ns := newProject(t, ctx, e, "triggers")
	cfg := builderConfig(t, ctx, e, ns)
	image := e.RegistryHost + "/" + ns + "/app:v1"
	pushRunnable(t, ctx, cfg, image)
	first := digestOf(t, ctx, cfg, image)

	labels := map[string]string{"app": "web"}
	trigger := `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`
	if _, err := e.Admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{imagetrigger.Annotation: trigger}},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "app", Image: " "}}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runningDigest(t, ctx, e, ns, first)

	// A new app:v1: the same app with another label, so another digest.
	if out, err := harness.Crane(ctx, cfg, "mutate", image, "--label", "build=2", "-t", image); err != nil {
		t.Fatalf("crane mutate: %v: %s", err, out)
	}
	second := digestOf(t, ctx, cfg, image)
	if second == first {
		t.Fatal("the second push has the first's digest")
	}
	runningDigest(t, ctx, e, ns, second)
}

func digestOf(t *testing.T, ctx context.Context, cfg, image string) string {
	t.Helper()
	out, err := harness.Crane(ctx, cfg, "digest", image)
	if err != nil {
		t.Fatalf("crane digest %s: %v: %s", image, err, out)
	}
	return strings.TrimSpace(out)
}

// runningDigest waits until a pod of Deployment web runs, on the real node, the
// image with digest.
func runningDigest(t *testing.T, ctx context.Context, e *harness.Env, ns, digest string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := e.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, p := range pods.Items {
			for _, s := range p.Status.ContainerStatuses {
				seen = append(seen, p.Spec.Containers[0].Image+" "+s.ImageID)
				if s.State.Running != nil && strings.HasSuffix(s.ImageID, digest) && strings.HasSuffix(p.Spec.Containers[0].Image, "@"+digest) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no pod of deploy/web runs %s: %v (pods: %q)", digest, err, seen)
	}
}
