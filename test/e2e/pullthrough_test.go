package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// Pull-through (oc import-image --reference-policy=local): a pod pulls an image
// imported from the seed's htpasswd registry as <registry>/<project>/app:v1; the
// integrated registry read it there with the project's pull secret (the source's
// log says main-user) and stored it, so with the source stopped it still serves it,
// whole; the pod never held the source's credential; another project without the
// grant is refused, as for any pushed image.
func TestPullThroughImportedImages(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	regs := startSeedRegistries(t, ctx)
	ns := createNamespace(t, ctx, "pullthrough")
	waitForServiceAccount(t, ctx, ns, "default")
	developer := basicDockerConfig(t, map[string][2]string{regs.Private: {"developer", "dev-pass"}})
	from := regs.Private + "/pullthrough/app:v1"
	want := pushFile(t, ctx, developer, from, []byte("pulled through"), regs.CAEnv)

	cli := newCLI(t)
	cli.ok(ctx, "", "-n", ns, "create", "secret", "docker-registry", "private", "--docker-server="+regs.Private, "--docker-username=main-user", "--docker-password=main-pass")
	args := []string{"import-image", "app:v1", "--from=" + from, "--confirm", "--reference-policy=local", "-n", ns}
	if oc := os.Getenv("OC"); oc != "" {
		cmd := exec.CommandContext(ctx, oc, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("oc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	} else {
		cli.ok(ctx, "", args...)
	}

	image := env.RegistryHost + "/" + ns + "/app:v1"
	createPod(t, ctx, ns, "first", image)
	waitForCondition(t, ctx, ns, "first", corev1.ConditionTrue, time.Minute)
	if by := regs.Pullers("pullthrough/app", want); len(by) == 0 || by[len(by)-1] != "main-user" {
		t.Errorf("the registry read the source as %q, want main-user (the project's secret)", by)
	}
	pod, err := env.Admin.CoreV1().Pods(ns).Get(ctx, "first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == "private" {
			t.Errorf("the pod holds the source's credential %q", ref.Name)
		}
	}

	// The source gone, the registry serves what it stored: manifest and blobs whole.
	regs.PrivateProcess.Stop()
	puller := dockerConfigFor(t, ctx, ns, "puller", "system:image-puller")
	if out, err := harness.Crane(ctx, puller, "validate", "--remote", image); err != nil {
		t.Fatalf("with the source stopped, crane validate %s: %v\n%s", image, err, out)
	}
	if out, err := harness.Crane(ctx, puller, "digest", image); err != nil || strings.TrimSpace(out) != want {
		t.Errorf("digest with the source stopped: %q %v, want %s", out, err, want)
	}
	createPod(t, ctx, ns, "second", image)
	waitForCondition(t, ctx, ns, "second", corev1.ConditionTrue, time.Minute)

	// Another project's account, without the grant: refused as for a pushed image.
	other := createNamespace(t, ctx, "pullthrough-other")
	stranger := dockerConfigFor(t, ctx, other, "stranger", "system:image-puller")
	if out, err := harness.Crane(ctx, stranger, "digest", image); err == nil || !strings.Contains(out, "UNAUTHORIZED") && !strings.Contains(out, "DENIED") {
		t.Errorf("another project's account pulled %s: %v\n%s", image, err, out)
	}
}
