package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/harness"
)

// setTrigger makes Deployment name in ns follow tag (STREAM:TAG or NS/STREAM:TAG)
// for its container app: with the real oc set triggers when OC is set, else by
// writing the annotation oc writes.
func setTrigger(t *testing.T, ctx context.Context, ns, name, tag string) {
	t.Helper()
	if oc := os.Getenv("OC"); oc != "" {
		cmd := exec.CommandContext(ctx, oc, "set", "triggers", "deploy/"+name, "--from-image="+tag, "-c", "app", "-n", ns)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("oc set triggers deploy/%s --from-image=%s: %v\n%s", name, tag, err, out)
		}
		return
	}
	from := `"name":"` + tag + `"`
	if src, nameTag, ok := strings.Cut(tag, "/"); ok {
		from = `"name":"` + nameTag + `","namespace":"` + src + `"`
	}
	value := `[{"from":{"kind":"ImageStreamTag",` + from + `},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`
	if out, err := env.Kubectl(ctx, "annotate", "deploy", name, "-n", ns, imagetrigger.Annotation+"="+value); err != nil {
		t.Fatalf("kubectl annotate deploy %s: %v\n%s", name, err, out)
	}
}

// waitForRollout waits until Deployment name's container app is image and one of
// its pods has pulled it (the node's ImagesPulled condition).
func waitForRollout(t *testing.T, ctx context.Context, ns, name, image string) {
	t.Helper()
	var seen string
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		d, err := env.Admin.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		seen = d.Spec.Template.Spec.Containers[0].Image
		if seen != image {
			return false
		}
		pods, err := env.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			c := condition(&p, "ImagesPulled")
			if p.Spec.Containers[0].Image == image && c != nil && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("deploy/%s in %s: image %q, want %s pulled by a pod", name, ns, seen, image)
	}
}

// Image-change triggers (oc set triggers --from-image): a Deployment created as oc
// new-app writes it (image " " and the annotation) gets its tag's image and its pod
// pulls it; a push of a new app:v1 rolls it to the new digest, pulled by a new pod;
// a Job gets the tag's image when it is created.
// A tag of another project is followed only once the pods' service account may pull
// it: before, a Warning Event on the Deployment says so and nothing rolls.
func TestImageChangeTriggers(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	ns := createNamespace(t, ctx, "triggers")
	waitForServiceAccount(t, ctx, ns, "default")
	pusher := dockerConfigFor(t, ctx, ns, "pusher", "system:image-builder")
	repo := env.RegistryHost + "/" + ns + "/app"
	first := pushFile(t, ctx, pusher, repo+":v1", []byte("first"))

	if _, err := env.Admin.AppsV1().Deployments(ns).Create(ctx, deployment("web", " ", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setTrigger(t, ctx, ns, "web", "app:v1")
	waitForRollout(t, ctx, ns, "web", repo+"@"+first)

	second := pushFile(t, ctx, pusher, repo+":v1", []byte("second"))
	waitForRollout(t, ctx, ns, "web", repo+"@"+second)
	if msg := waitForEvent(t, ctx, ns, "web", imagetrigger.ReasonUpdated); !strings.Contains(msg, second) {
		t.Errorf("ImageTriggered event: %q", msg)
	}

	// A Job's pod template cannot change once created: its triggers are set then.
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "once", Annotations: map[string]string{imagetrigger.Annotation: `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: " "}}}}}}
	created, err := env.Admin.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	if err != nil || created.Spec.Template.Spec.Containers[0].Image != repo+"@"+second {
		t.Errorf("a triggered Job at creation: %v, image %q", err, created.Spec.Template.Spec.Containers[0].Image)
	}

	// Another project follows ns's app:v1.
	consumer := createNamespace(t, ctx, "consumer")
	waitForServiceAccount(t, ctx, consumer, "default")
	if _, err := env.Admin.AppsV1().Deployments(consumer).Create(ctx, deployment("app", " ", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setTrigger(t, ctx, consumer, "app", ns+"/app:v1")
	msg := waitForEvent(t, ctx, consumer, "app", imagetrigger.ReasonFailed)
	fix := "pullgate policy add-role-to-user system:image-puller system:serviceaccount:" + consumer + ":default -n " + ns
	if !strings.Contains(msg, "may not pull image stream "+ns+"/app") || !strings.Contains(msg, fix) {
		t.Errorf("FailedImageTrigger event: %q, want the refusal and %q", msg, fix)
	}
	if d, err := env.Admin.AppsV1().Deployments(consumer).Get(ctx, "app", metav1.GetOptions{}); err != nil || d.Spec.Template.Spec.Containers[0].Image != " " {
		t.Fatalf("without the grant: %v, image %q", err, d.Spec.Template.Spec.Containers[0].Image)
	}
	if _, err := env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "consumer-pulls"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: consumer}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForRollout(t, ctx, consumer, "app", repo+"@"+second)
}
