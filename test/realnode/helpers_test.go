package realnode

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"pullgate.dev/pullgate/internal/harness"
)

var (
	appOnce  sync.Once
	appDir   string // removed by TestMain
	appLayer string
	appErr   error
)

// appTar is a layer holding testdata/app as /app, built once.
func appTar(t *testing.T) string {
	t.Helper()
	appOnce.Do(func() {
		dir, err := os.MkdirTemp("", "realnode-app-")
		if err != nil {
			appErr = err
			return
		}
		appDir = dir
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "app"), "./testdata/app")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			appErr = err
			t.Logf("%s", out)
			return
		}
		appLayer = filepath.Join(dir, "app.tar")
		appErr = exec.Command("tar", "-C", dir, "-cf", appLayer, "app").Run()
	})
	if appErr != nil {
		t.Fatal("building the test image's app:", appErr)
	}
	return appLayer
}

// newProject makes a namespace and waits for its default service account's pull
// secret to be linked, as a user who waits for `oc new-project` would.
func newProject(t *testing.T, ctx context.Context, e *harness.Env, prefix string) string {
	t.Helper()
	ns := e.Namespace(t, ctx, prefix)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		sa, err := e.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil && len(sa.ImagePullSecrets) > 0, nil
	})
	if err != nil {
		t.Fatalf("namespace %s: default service account without its pull secret: %v", ns, err)
	}
	return ns
}

// pushApp pushes a runnable image to ns/app:v1 of the integrated registry as a
// builder of ns and returns its name.
func pushApp(t *testing.T, ctx context.Context, e *harness.Env, ns string) string {
	t.Helper()
	image := e.RegistryHost + "/" + ns + "/app:v1"
	pushRunnable(t, ctx, builderConfig(t, ctx, e, ns), image)
	return image
}

// builderConfig is a docker config directory for a builder of ns (account pusher).
func builderConfig(t *testing.T, ctx context.Context, e *harness.Env, ns string) string {
	t.Helper()
	token, err := e.Account(ctx, ns, "pusher", "system:image-builder")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := e.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// pushRunnable pushes image (the app, linux/amd64, entrypoint /app) with the
// credentials in the docker config directory cfg.
func pushRunnable(t *testing.T, ctx context.Context, cfg, image string, extraEnv ...string) {
	t.Helper()
	base := image + "-base"
	if out, err := harness.CraneEnv(ctx, cfg, extraEnv, "append", "--oci-empty-base", "-f", appTar(t), "-t", base); err != nil {
		t.Fatalf("crane append: %v: %s", err, out)
	}
	// A real node runs only images with a platform (containerd's CRI filters others).
	if out, err := harness.CraneEnv(ctx, cfg, extraEnv, "mutate", base, "--set-platform", "linux/amd64", "--entrypoint", "/app", "-t", image); err != nil {
		t.Fatalf("crane mutate: %v: %s", err, out)
	}
}

// runPod creates a pod running image, with these pull secrets if any (then the
// service account's are not added), and returns its name.
func runPod(t *testing.T, ctx context.Context, e *harness.Env, ns, name, image string, secrets ...string) string {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
	for _, s := range secrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if _, err := e.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// Outcomes of a pod's pull, the same on any node.
const (
	pulled  = "pulled"
	refused = "refused"
)

// outcome waits until the pod's image is pulled (its status has an image ID) or
// refused (ErrImagePull, ImagePullBackOff), and says which, with the waiting message.
func outcome(t *testing.T, ctx context.Context, e *harness.Env, ns, name string) (string, string) {
	t.Helper()
	var result, message string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pod, err := e.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, s := range pod.Status.ContainerStatuses {
			if s.ImageID != "" {
				result = pulled
				return true, nil
			}
			if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				result, message = refused, w.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		pod, _ := e.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		t.Fatalf("pod %s/%s neither pulled nor refused: %v (status %+v)", ns, name, err, pod.Status)
	}
	return result, message
}

// event waits for an Event with reason on the pod and returns its message.
func event(t *testing.T, ctx context.Context, e *harness.Env, ns, pod, reason string) string {
	t.Helper()
	var message string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := e.Admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",reason=" + reason})
		if err != nil || len(list.Items) == 0 {
			return false, nil
		}
		message = list.Items[0].Message
		return true, nil
	})
	if err != nil {
		t.Fatalf("no %s event on pod %s/%s: %v", reason, ns, pod, err)
	}
	return message
}

func mustContain(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s does not say %q:\n%s", what, p, s)
		}
	}
}
