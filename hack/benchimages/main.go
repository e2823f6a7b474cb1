// Command benchimages measures, against a real `pullgate up`, what the
// image.openshift.io work costs: `oc tag` of a 50 MiB image from one project's
// stream into another's (imagestreamtags, the blobs mounted in the registry) beside
// `crane copy` of the same image between the same repositories (anchor: the
// registry's own cross-repository mount, driven by a client); and a pod create
// naming `app:v1` with the image lookup webhook resolving it, beside the same
// create with the webhook not registered; and a push moving the tag a Deployment's
// trigger follows until a new pod has pulled it, beside a user's image patch of a
// Deployment without triggers until the same.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/hack/internal/benchstat"
	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/openshift/imagelookup"
	"pullgate.dev/pullgate/internal/services"
)

func main() {
	runs := flag.Int("runs", 10, "tags and copies measured")
	creates := flag.Int("creates", 50, "pod creates measured each way")
	flag.Parse()
	ctx := context.Background()
	env, err := harness.Start(harness.Options{})
	benchstat.Check(err)
	defer env.Close()
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	benchstat.Check(err)
	for _, ns := range []string{"src", "dst"} {
		_, err := env.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		benchstat.Check(err)
	}
	token, err := env.Account(ctx, "src", "pusher", "admin")
	benchstat.Check(err)
	_, err = env.Admin.RbacV1().RoleBindings("dst").Create(ctx, pusherAdmin(), metav1.CreateOptions{})
	benchstat.Check(err)
	cfg, err := env.DockerConfig(env.DataDir, token)
	benchstat.Check(err)
	defer os.RemoveAll(cfg)
	content := make([]byte, 50<<20)
	_, _ = rand.Read(content)
	src := env.RegistryHost + "/src/app:v1"
	var digest string
	benchstat.Until(30*time.Second, func() bool {
		digest, err = harness.PushFile(ctx, cfg, src, content)
		return err == nil
	})
	benchstat.Check(err)
	waitForAPI(ctx, dyn)

	istags := dyn.Resource(schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreamtags"}).Namespace("dst")
	var tag, copyTook []time.Duration
	for i := range *runs {
		ist := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
			"metadata": map[string]any{"name": fmt.Sprintf("app:t%d", i)},
			"tag":      map[string]any{"name": fmt.Sprintf("t%d", i), "from": map[string]any{"kind": "ImageStreamImage", "namespace": "src", "name": "app@" + digest}}}}
		begin := time.Now()
		_, err := istags.Create(ctx, ist, metav1.CreateOptions{})
		benchstat.Check(err)
		tag = append(tag, time.Since(begin))
		begin = time.Now()
		_, err = harness.Crane(ctx, cfg, "copy", src, fmt.Sprintf("%s/dst/copy:c%d", env.RegistryHost, i))
		benchstat.Check(err)
		copyTook = append(copyTook, time.Since(begin))
	}

	// Pod creates, with and without the webhook.
	_, err = dyn.Resource(schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}).Namespace("src").
		Patch(ctx, "app", "application/merge-patch+json", []byte(`{"spec":{"lookupPolicy":{"local":true}}}`), metav1.PatchOptions{})
	benchstat.Check(err)
	benchstat.Until(10*time.Second, func() bool {
		p, err := env.Admin.CoreV1().Pods("src").Create(ctx, pod("probe"), metav1.CreateOptions{})
		return err == nil && p.Spec.Containers[0].Image != "app:v1"
	})
	with := createPods(ctx, env, "w", *creates)
	hooks := env.Admin.AdmissionregistrationV1().MutatingWebhookConfigurations()
	saved, err := hooks.Get(ctx, imagelookup.WebhookName, metav1.GetOptions{})
	benchstat.Check(err)
	benchstat.Check(hooks.Delete(ctx, imagelookup.WebhookName, metav1.DeleteOptions{}))
	benchstat.Until(10*time.Second, func() bool {
		p, err := env.Admin.CoreV1().Pods("src").Create(ctx, pod(fmt.Sprintf("probe-%d", time.Now().UnixNano())), metav1.CreateOptions{})
		return err == nil && p.Spec.Containers[0].Image == "app:v1"
	})
	without := createPods(ctx, env, "n", *creates)
	saved.ResourceVersion = ""
	_, err = hooks.Create(ctx, saved, metav1.CreateOptions{})
	benchstat.Check(err)

	// Image-change triggers: a push moves the tag a Deployment follows; the anchor is
	// a Deployment without triggers patched to a new digest by its user.
	moves := *runs * 2
	patchedAt, triggered, patched := rollouts(ctx, env, cfg, moves)

	fmt.Printf("%-58s %10s %10s %s\n", "image streams (same machine, same run)", "p50", "p99", "anchor")
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("oc tag src/app@… dst/app:tN, 50 MiB (%d)", len(tag)), benchstat.Pct(tag, 50, 100*time.Microsecond), benchstat.Pct(tag, 99, 100*time.Microsecond),
		fmt.Sprintf("crane copy, same image and repos: p50 %s (%.2f×)", benchstat.Pct(copyTook, 50, 100*time.Microsecond), benchstat.Ratio(tag, copyTook)))
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("pod create naming app:v1, resolved (%d)", len(with)), benchstat.Pct(with, 50, 100*time.Microsecond), benchstat.Pct(with, 99, 100*time.Microsecond),
		fmt.Sprintf("without the webhook: p50 %s (+%s)", benchstat.Pct(without, 50, 100*time.Microsecond), (benchstat.P(with, 50)-benchstat.P(without, 50)).Round(100*time.Microsecond)))
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("tag moved by a push → Deployment's image set (%d)", len(patchedAt)), benchstat.Pct(patchedAt, 50, 100*time.Microsecond), benchstat.Pct(patchedAt, 99, 100*time.Microsecond),
		"the trigger controller alone: stream informer to patch")
	fmt.Printf("%-58s %10s %10s %s\n", fmt.Sprintf("tag moved by a push → triggered pod ImagesPulled (%d)", len(triggered)), benchstat.Pct(triggered, 50, 100*time.Microsecond), benchstat.Pct(triggered, 99, 100*time.Microsecond),
		fmt.Sprintf("image patched by its user → pod ImagesPulled: p50 %s, p99 %s (%.2f×)", benchstat.Pct(patched, 50, 100*time.Microsecond), benchstat.Pct(patched, 99, 100*time.Microsecond), benchstat.Ratio(triggered, patched)))
}

// rollouts measures n tag moves of a triggered Deployment (push acknowledged → its
// image set; → a new pod has pulled the new digest) and n image patches of one without triggers
// (patch sent → the same).
func rollouts(ctx context.Context, env *harness.Env, cfg string, n int) (patchedAt, triggered, patched []time.Duration) {
	deployments := env.Admin.AppsV1().Deployments("src")
	_, err := deployments.Create(ctx, deployment("web", map[string]string{imagetrigger.Annotation: `[{"from":{"kind":"ImageStreamTag","name":"app:trig"},"fieldPath":"spec.template.spec.containers[?(@.name==\"app\")].image"}]`}), metav1.CreateOptions{})
	benchstat.Check(err)
	_, err = deployments.Create(ctx, deployment("plain", nil), metav1.CreateOptions{})
	benchstat.Check(err)
	for i := range n {
		digest, err := harness.PushFile(ctx, cfg, env.RegistryHost+"/src/app:trig", []byte(fmt.Sprintf("move %d", i)))
		benchstat.Check(err)
		image := env.RegistryHost + "/src/app@" + digest
		begin := time.Now()
		benchstat.Until(time.Minute, func() bool {
			d, err := deployments.Get(ctx, "web", metav1.GetOptions{})
			benchstat.Check(err)
			return d.Spec.Template.Spec.Containers[0].Image == image
		})
		patchedAt = append(patchedAt, time.Since(begin))
		waitPulled(ctx, env, "web", image)
		triggered = append(triggered, time.Since(begin))

		digest, err = harness.PushFile(ctx, cfg, env.RegistryHost+"/src/app:direct", []byte(fmt.Sprintf("direct %d", i)))
		benchstat.Check(err)
		image = env.RegistryHost + "/src/app@" + digest
		begin = time.Now()
		_, err = deployments.Patch(ctx, "plain", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"`+image+`"}]`), metav1.PatchOptions{})
		benchstat.Check(err)
		waitPulled(ctx, env, "plain", image)
		patched = append(patched, time.Since(begin))
	}
	return patchedAt, triggered, patched
}

func deployment(name string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	// The node agent pulls but runs nothing, so no pod is ever Ready: a rollout may
	// not wait for one.
	one := intstr.FromInt32(1)
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &one, MaxSurge: &one}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: " "}}}}}}
}

// waitPulled waits until a pod of Deployment name has pulled image.
func waitPulled(ctx context.Context, env *harness.Env, name, image string) {
	var seen []string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		pods, err := env.Admin.CoreV1().Pods("src").List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		benchstat.Check(err)
		seen = nil
		for _, p := range pods.Items {
			seen = append(seen, p.Spec.Containers[0].Image)
			for _, c := range p.Status.Conditions {
				if p.Spec.Containers[0].Image == image && c.Type == "ImagesPulled" && c.Status == corev1.ConditionTrue {
					return
				}
			}
		}
	}
	d, err := env.Admin.AppsV1().Deployments("src").Get(ctx, name, metav1.GetOptions{})
	benchstat.Check(err)
	benchstat.Check(fmt.Errorf("no pod of deploy/%s (image %s, %+v) pulled %s within a minute; its pods' images: %q; log: %s", name, d.Spec.Template.Spec.Containers[0].Image, d.Status, image, seen, env.LogTail(30)))
}

// pusherAdmin lets src's pusher push to dst too, for crane copy.
func pusherAdmin() *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "pusher"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "src", Name: "pusher"}}}
}

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: "elsewhere", Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}}}
}

// createPods creates n pods naming app:v1 in src, one at a time, and returns how
// long each create took.
func createPods(ctx context.Context, env *harness.Env, prefix string, n int) []time.Duration {
	// Unthrottled: client-go's default 5 requests per second would be the measure.
	client, err := kubernetes.NewForConfig(services.WithRateLimits(env.AdminConfig))
	benchstat.Check(err)
	var out []time.Duration
	for i := range n {
		begin := time.Now()
		_, err := client.CoreV1().Pods("src").Create(ctx, pod(fmt.Sprintf("%s-%d", prefix, i)), metav1.CreateOptions{})
		benchstat.Check(err)
		out = append(out, time.Since(begin))
	}
	return out
}

// waitForAPI waits until image.openshift.io is served.
func waitForAPI(ctx context.Context, dyn dynamic.Interface) {
	benchstat.Until(time.Minute, func() bool {
		_, err := dyn.Resource(schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}).Namespace("src").Get(ctx, "app", metav1.GetOptions{})
		return err == nil
	})
}
