package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/openshift/imagelookup"
)

func deployment(name, image string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}}}
}

// Lookup by name (oc set image-lookup): a Deployment that says app:v1 gets the
// stream's digest in the integrated registry at admission and its pod pulls it; the
// resolve-names annotation does it for a stream without lookupPolicy.local; a name
// that is no stream's is left alone; and with the webhook unreachable, pods are
// admitted as they are (it fails open, as documented).
func TestImageLookupByName(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	ns := createNamespace(t, ctx, "lookup")
	waitForServiceAccount(t, ctx, ns, "default")
	pusher := dockerConfigFor(t, ctx, ns, "pusher", "system:image-builder")
	digest := pushFile(t, ctx, pusher, env.RegistryHost+"/"+ns+"/app:v1", []byte("look me up"))
	closed := pushFile(t, ctx, pusher, env.RegistryHost+"/"+ns+"/closed:v1", []byte("closed"))

	if oc := os.Getenv("OC"); oc != "" {
		cmd := exec.CommandContext(ctx, oc, "set", "image-lookup", "app", "-n", ns)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "updated") {
			t.Fatalf("oc set image-lookup app: %v\n%s", err, out)
		}
	} else if out, err := env.Kubectl(ctx, "patch", "is", "app", "-n", ns, "--type=merge", "-p", `{"spec":{"lookupPolicy":{"local":true}}}`); err != nil {
		t.Fatalf("kubectl patch is app: %v\n%s", err, out)
	}
	// The webhook reads streams from an informer: it sees the policy a moment later.
	want := env.RegistryHost + "/" + ns + "/app@" + digest
	var d *appsv1.Deployment
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		_ = env.Admin.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{})
		var err error
		d, err = env.Admin.AppsV1().Deployments(ns).Create(ctx, deployment("web", "app:v1", nil), metav1.CreateOptions{})
		return err == nil && d.Spec.Template.Spec.Containers[0].Image == want
	}) {
		t.Fatalf("a Deployment naming app:v1 was not resolved to %s: %+v", want, d.Spec.Template.Spec.Containers)
	}
	var pod *corev1.Pod
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		pods, err := env.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) == 0 {
			return false
		}
		pod = &pods.Items[0]
		c := condition(pod, "ImagesPulled")
		return c != nil && c.Status == corev1.ConditionTrue
	}) {
		t.Fatalf("the resolved Deployment's pod did not pull: %+v", pod)
	}

	annotated, err := env.Admin.AppsV1().Deployments(ns).Create(ctx, deployment("closed", "closed:v1", map[string]string{imagelookup.ResolveNamesAnnotation: "*"}), metav1.CreateOptions{})
	if err != nil || annotated.Spec.Template.Spec.Containers[0].Image != env.RegistryHost+"/"+ns+"/closed@"+closed {
		t.Errorf("resolve-names on the template: %v %+v", err, annotated.Spec.Template.Spec.Containers)
	}
	// oc set image-lookup deploy/later: the annotation on its template, resolved at
	// the update.
	if _, err := env.Admin.AppsV1().Deployments(ns).Create(ctx, deployment("later", "closed:v1", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if oc := os.Getenv("OC"); oc != "" {
		cmd := exec.CommandContext(ctx, oc, "set", "image-lookup", "deploy/later", "-n", ns)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("oc set image-lookup deploy/later: %v\n%s", err, out)
		}
	} else if out, err := env.Kubectl(ctx, "patch", "deploy", "later", "-n", ns, "--type=merge", "-p",
		`{"spec":{"template":{"metadata":{"annotations":{"`+imagelookup.ResolveNamesAnnotation+`":"*"}}}}}`); err != nil {
		t.Fatalf("kubectl patch deploy later: %v\n%s", err, out)
	}
	if later, err := env.Admin.AppsV1().Deployments(ns).Get(ctx, "later", metav1.GetOptions{}); err != nil || later.Spec.Template.Spec.Containers[0].Image != env.RegistryHost+"/"+ns+"/closed@"+closed {
		t.Errorf("resolve-names set on an existing Deployment: %v %+v", err, later.Spec.Template.Spec.Containers)
	}

	plain, err := env.Admin.CoreV1().Pods(ns).Create(ctx, newPod(ns, "plain", "closed:v1"), metav1.CreateOptions{})
	if err != nil || plain.Spec.Containers[0].Image != "closed:v1" {
		t.Errorf("a stream without lookupPolicy.local resolved a pod: %v %+v", err, plain.Spec.Containers)
	}
	other, err := env.Admin.CoreV1().Pods(ns).Create(ctx, newPod(ns, "other", "nginx:1.27"), metav1.CreateOptions{})
	if err != nil || other.Spec.Containers[0].Image != "nginx:1.27" {
		t.Errorf("a name that is no stream's was changed: %v %+v", err, other.Spec.Containers)
	}

	// Fails open: with the webhook unreachable, a pod is admitted as it is.
	hooks := env.Admin.AdmissionregistrationV1().MutatingWebhookConfigurations()
	saved, err := hooks.Get(ctx, imagelookup.WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead := saved.DeepCopy()
	url := "https://127.0.0.1:1/resolve"
	dead.Webhooks[0].ClientConfig.URL = &url
	if _, err := hooks.Update(ctx, dead, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		now, err := hooks.Get(context.Background(), imagelookup.WebhookName, metav1.GetOptions{})
		if err == nil {
			now.Webhooks = saved.Webhooks
			_, err = hooks.Update(context.Background(), now, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("restoring the webhook: %v", err)
		}
	}
	t.Cleanup(restore)
	down, err := env.Admin.CoreV1().Pods(ns).Create(ctx, newPod(ns, "down", "app:v1"), metav1.CreateOptions{})
	if err != nil || down.Spec.Containers[0].Image != "app:v1" {
		t.Errorf("with the webhook down: %v %+v, want the pod admitted unchanged", err, down)
	}
}

// Only the API server may ask the lookup webhook what a project's names resolve to:
// a local user reaching its loopback port without a client certificate fails the
// handshake, one with up's administrator certificate too (another CA), and one with
// the aggregation layer's certificate (the front-proxy CA, another name) is refused
// 403 — while the API server's own calls resolve (TestImageLookupByName).
func TestImageLookupWebhookAnswersOnlyTheAPIServer(t *testing.T) {
	ctx := harness.Context(t, time.Minute)
	hook, err := env.Admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, imagelookup.WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := *hook.Webhooks[0].ClientConfig.URL
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(hook.Webhooks[0].ClientConfig.CABundle)
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"namespace":"default","object":{"spec":{"containers":[{"name":"a","image":"app:v1"}]}}}}`
	post := func(certs ...tls.Certificate) (int, error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
		resp, err := client.Post(url, "application/json", strings.NewReader(review))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(); err == nil {
		t.Errorf("without a client certificate: answered %d", code)
	}
	pki := filepath.Join(env.DataDir, "pki")
	admin, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := post(admin); err == nil {
		t.Errorf("with up's administrator certificate: answered %d", code)
	}
	proxy, err := tls.LoadX509KeyPair(filepath.Join(pki, "front-proxy", "front-proxy-client.crt"), filepath.Join(pki, "front-proxy", "front-proxy-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := post(proxy); err != nil || code != http.StatusForbidden {
		t.Errorf("with the aggregation layer's certificate: %d %v, want 403", code, err)
	}
}
