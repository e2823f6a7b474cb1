package scaleout

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/openshift/imagelookup"
	"pullgate.dev/pullgate/internal/platform/controlplane"
	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/pkg/credentials"
)

// deploy/'s image lookup webhook: a `registry serve` replica with
// --image-lookup-listen resolves a pod's `app:v1` once the API server's webhook
// registration points at it, answering only the API server's client certificate
// (--image-lookup-client-ca, --image-lookup-caller); anyone else fails the handshake.
func TestRegistryReplicaServesImageLookup(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	s3, err := harness.StartS3(t.TempDir(), "lookup")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Stop)
	ca, err := pki.Open(filepath.Join(env.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServingCert("lookup-replica", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ports, err := listen.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr, hookAddr := "127.0.0.1:"+strconv.Itoa(ports[0]), "127.0.0.1:"+strconv.Itoa(ports[1])
	p, err := harness.StartRegistryReplica(env.Kubeconfig, t.TempDir(), addr, "localhost:"+strconv.Itoa(ports[0]), s3,
		append(s3.CredentialParams(), "--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile, "--image-lookup-listen", hookAddr,
			"--image-lookup-client-ca", controlplane.FrontProxyCAFile(env.DataDir), "--image-lookup-caller", controlplane.WebhookClientName)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	// A stream with lookupPolicy.local, pushed through up's registry.
	ns := env.Namespace(t, ctx, "lookup")
	token, err := env.Account(ctx, ns, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	pusher := harness.DockerConfigFor(t, env.RegistryHost, credentials.Credential{Username: "pullgate", Password: token})
	digest, err := harness.PushFile(ctx, pusher, env.RegistryHost+"/"+ns+"/app:v1", []byte("looked up by a replica"))
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(imageapi.GVR).Namespace(ns).Patch(ctx, "app", types.MergePatchType, []byte(`{"spec":{"lookupPolicy":{"local":true}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// up's registration, pointed at the replica for the test.
	hooks := env.Admin.AdmissionregistrationV1().MutatingWebhookConfigurations()
	saved, err := hooks.Get(ctx, imagelookup.WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(ca.Path, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := imagelookup.Register(ctx, env.Admin, "https://"+hookAddr+imagelookup.DeployPath, caPEM); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		now, err := hooks.Get(context.Background(), imagelookup.WebhookName, metav1.GetOptions{})
		if err == nil {
			now.Webhooks = saved.Webhooks
			_, err = hooks.Update(context.Background(), now, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("restoring up's webhook: %v", err)
		}
	})
	want := env.RegistryHost + "/" + ns + "/app@" + digest
	var got string
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		name := "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		pod, err := env.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: "elsewhere", Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}}}, metav1.CreateOptions{})
		if err != nil {
			return false
		}
		got = pod.Spec.Containers[0].Image
		return got == want
	}) {
		t.Fatalf("a pod naming app:v1 through the replica's webhook: %q, want %s; replica log:\n%s", got, want, p.Output())
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the attacker does not care who answers
	resp, err := client.Post("https://"+hookAddr+imagelookup.DeployPath, "application/json",
		strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"namespace":"`+ns+`","object":{"spec":{"containers":[{"name":"a","image":"app:v1"}]}}}}`))
	if err == nil {
		resp.Body.Close()
		t.Errorf("a client without the API server's certificate was answered %d", resp.StatusCode)
	}
}
