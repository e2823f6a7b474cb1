package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/node/credprovider"
	"pullgate.dev/pullgate/internal/platform/kubeconfig"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// The node agent of `up` (node "local") pulls the images of pods: the seed's "pods
// in project-a are able to pull images from project-b", seen on real pods.

// A pod in project-b pulls an image pushed to project-b with no action by anyone.
func TestPodPullsFromItsOwnProject(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	projectB := createNamespace(t, ctx, "project-b")
	waitForServiceAccount(t, ctx, projectB, "default")
	image := env.RegistryHost + "/" + projectB + "/app:v1"
	digest := pushImage(t, ctx, dockerConfigFor(t, ctx, projectB, "pusher", "admin"), image)

	pod := createPod(t, ctx, projectB, "app", image)
	got := waitForCondition(t, ctx, projectB, pod, corev1.ConditionTrue, 30*time.Second)
	if got.Spec.NodeName != "local" {
		t.Errorf("pod bound to %q, want the node agent of up, local", got.Spec.NodeName)
	}
	cs := got.Status.ContainerStatuses[0]
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "PullOnlyNode" || !strings.Contains(cs.State.Waiting.Message, "does not run containers") {
		t.Errorf("container state %+v, want waiting PullOnlyNode saying the node runs no containers", cs.State)
	}
	if !strings.HasSuffix(cs.ImageID, "@"+digest) {
		t.Errorf("imageID %q, want the pushed digest %s", cs.ImageID, digest)
	}
	// Whichever comes first: the account's pull secret, once linked, or its token.
	if ev := waitForEvent(t, ctx, projectB, pod, "Pulled"); !strings.Contains(ev, "Successfully pulled image") ||
		(!strings.Contains(ev, "secret "+projectB+"/default-dockercfg") && !strings.Contains(ev, "service account "+projectB+"/default")) {
		t.Errorf("Pulled event %q does not say which credential pulled", ev)
	}

	// A second pod with the same image uses the node's copy: nothing is transferred.
	before := metricValue(t, "pullgate_node_image_pull_bytes_total")
	second := createPod(t, ctx, projectB, "again", image)
	waitForCondition(t, ctx, projectB, second, corev1.ConditionTrue, 30*time.Second)
	if after := metricValue(t, "pullgate_node_image_pull_bytes_total"); after != before {
		t.Errorf("the second pod transferred %v bytes, want 0", after-before)
	}
	if ev := waitForEvent(t, ctx, projectB, second, "Pulled"); !strings.Contains(ev, "already present on machine") {
		t.Errorf("second pod's Pulled event %q, want already present", ev)
	}
}

// A pod in project-a is in ImagePullBackOff naming the missing role until
// system:image-puller is granted in project-b, to its service account or to its
// project's group; then it pulls on the next retry. Whether the image is already on
// the node (pulled by project-b) or not, project-a's own credentials decide.
func TestCrossProjectPodPullFollowsRBAC(t *testing.T) {
	for _, tc := range []struct {
		name         string
		subject      func(projectA string) rbacv1.Subject
		alreadyThere bool
	}{
		{"ServiceAccountImageNotOnNode", func(a string) rbacv1.Subject {
			return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: a}
		}, false},
		{"GroupImageAlreadyOnNode", func(a string) rbacv1.Subject {
			return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:" + a}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			projectA := createNamespace(t, ctx, "project-a")
			projectB := createNamespace(t, ctx, "project-b")
			waitForServiceAccount(t, ctx, projectA, "default")
			waitForServiceAccount(t, ctx, projectB, "default")
			image := env.RegistryHost + "/" + projectB + "/app:v1"
			pushImage(t, ctx, dockerConfigFor(t, ctx, projectB, "pusher", "admin"), image)
			if tc.alreadyThere {
				waitForCondition(t, ctx, projectB, createPod(t, ctx, projectB, "owner", image), corev1.ConditionTrue, 30*time.Second)
			}

			pod := createPod(t, ctx, projectA, "app", image)
			waiting := waitForWaiting(t, ctx, projectA, pod, "ImagePullBackOff", 30*time.Second)
			for _, says := range []string{"system:serviceaccount:" + projectA + ":default", projectB + "/app", "system:image-puller", "namespace " + projectB} {
				if !strings.Contains(waiting.Message, says) {
					t.Errorf("back-off message does not say %q:\n%s", says, waiting.Message)
				}
			}
			got, _ := env.Admin.CoreV1().Pods(projectA).Get(ctx, pod, metav1.GetOptions{})
			if c := condition(got, "ImagesPulled"); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "ImagePullBackOff" {
				t.Errorf("ImagesPulled %+v, want False with reason ImagePullBackOff", c)
			}

			_, err := env.Admin.RbacV1().RoleBindings(projectB).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "project-a-pulls"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
				Subjects:   []rbacv1.Subject{tc.subject(projectA)},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The next retry comes after the kubelet's back-off: 10 s, then 20 s.
			waitForCondition(t, ctx, projectA, pod, corev1.ConditionTrue, 90*time.Second)
		})
	}
}

// Bad input reaches the pod's message, and the node agent keeps serving other pods:
// an invalid image reference, a pull secret with broken JSON, and a registry that
// resets the connection in the middle of a blob.
func TestPullFailuresAreExplainedOnThePod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := createNamespace(t, ctx, "bad-input")
	waitForServiceAccount(t, ctx, ns, "default")
	pushCfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")

	invalid := createPod(t, ctx, ns, "invalid", "Not//A/Reference")
	w := waitForWaiting(t, ctx, ns, invalid, "InvalidImageName", 30*time.Second)
	if !strings.Contains(w.Message, "Not//A/Reference") {
		t.Errorf("InvalidImageName message %q does not name the image", w.Message)
	}

	_, err := env.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "broken"},
		// The API server checks the JSON of dockerconfigjson secrets, not of Podman's.
		Type: "kubernetes.io/podmanconfigjson",
		Data: map[string][]byte{"auth.json": []byte(`{"auths": {"` + env.RegistryHost + `": {"auth": "c2VjcmV0`)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	missing := newPod(ns, "broken-secret", env.RegistryHost+"/"+ns+"/missing:v1")
	missing.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "broken"}}
	if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, missing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w = waitForWaiting(t, ctx, ns, missing.Name, "ImagePullBackOff", 30*time.Second)
	for _, says := range []string{"not found", "secret " + ns + "/broken", "auth.json"} {
		if !strings.Contains(w.Message, says) {
			t.Errorf("message does not say %q:\n%s", says, w.Message)
		}
	}
	if strings.Contains(w.Message, "c2VjcmV0") {
		t.Errorf("message shows the secret's content: %s", w.Message)
	}

	// A registry in front of the integrated one that cuts every blob after 64 KiB.
	_, err = env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "anonymous-pull"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	pushFile(t, ctx, pushCfg, env.RegistryHost+"/"+ns+"/big:v1", big)
	proxy := resettingProxy(t, "http://"+env.RegistryHost, 64<<10)
	cut := createPod(t, ctx, ns, "cut", proxy+"/"+ns+"/big:v1")
	w = waitForWaiting(t, ctx, ns, cut, "ImagePullBackOff", 30*time.Second)
	if !strings.Contains(w.Message, "stopped after") || !strings.Contains(w.Message, proxy) {
		t.Errorf("message does not say the transfer from %s was cut:\n%s", proxy, w.Message)
	}

	// Meanwhile other pods are served.
	good := env.RegistryHost + "/" + ns + "/good:v1"
	pushImage(t, ctx, pushCfg, good)
	waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "good", good), corev1.ConditionTrue, 30*time.Second)
}

// resettingProxy serves target on a loopback port, resetting the connection of any
// blob download after limit bytes.
func resettingProxy(t *testing.T, target string, limit int) string {
	u, _ := url.Parse(target)
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host // the token realm then points back here
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			rp.ServeHTTP(harness.CutAfter(w, limit), r)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func newPod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

func createPod(t *testing.T, ctx context.Context, ns, name, image string) string {
	t.Helper()
	if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, newPod(ns, name, image), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func condition(pod *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == typ {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// waitForCondition waits for the pod's ImagesPulled condition to be status.
func waitForCondition(t *testing.T, ctx context.Context, ns, name string, status corev1.ConditionStatus, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	if !harness.Eventually(ctx, timeout, func(ctx context.Context) bool {
		var err error
		pod, err = env.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		c := (*corev1.PodCondition)(nil)
		if err == nil {
			c = condition(pod, "ImagesPulled")
		}
		return c != nil && c.Status == status
	}) {
		t.Fatalf("pod %s/%s: ImagesPulled did not become %s; status: %+v", ns, name, status, pod.Status)
	}
	return pod
}

// waitForWaiting waits for the pod's first container to be waiting with reason.
func waitForWaiting(t *testing.T, ctx context.Context, ns, name, reason string, timeout time.Duration) corev1.ContainerStateWaiting {
	t.Helper()
	var pod *corev1.Pod
	var got corev1.ContainerStateWaiting
	if !harness.Eventually(ctx, timeout, func(ctx context.Context) bool {
		var err error
		pod, err = env.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].State.Waiting == nil {
			return false
		}
		got = *pod.Status.ContainerStatuses[0].State.Waiting
		return got.Reason == reason
	}) {
		t.Fatalf("pod %s/%s: not waiting with %s; last: %+v", ns, name, reason, got)
	}
	return got
}

// waitForEvent returns the message of the pod's event with reason.
func waitForEvent(t *testing.T, ctx context.Context, ns, pod, reason string) string {
	t.Helper()
	var msg string
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		events, err := env.Admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
			"involvedObject.name": pod, "reason": reason}.String()})
		if err != nil || len(events.Items) == 0 {
			return false
		}
		msg = events.Items[len(events.Items)-1].Message
		return true
	}) {
		t.Fatalf("pod %s/%s: no %s event", ns, pod, reason)
	}
	return msg
}

// `pullgate node` runs more nodes against any cluster's API, with a node's identity
// (system:node:<name>), so the Node authorizer gives it a kubelet's rights and no
// more. A pod whose nodeName is set is honoured without the scheduler. Set up as a
// kubelet with pullgate's credential provider (the kubelet's flags and config file), it
// pulls with the pod's own service account token when the pod has no usable secret.
func TestMoreNodesWithPullgateNode(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "second-node")
	waitForServiceAccount(t, ctx, ns, "default")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	pushImage(t, ctx, dockerConfigFor(t, ctx, ns, "pusher", "admin"), image)

	node := "second-" + ns[len(ns)-5:]
	ca, err := pki.Open(filepath.Join(env.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ClientCert("node-"+node, "system:node:"+node, "system:nodes")
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "node.kubeconfig")
	if err := kubeconfig.WriteClientCert(kc, "pullgate", fmt.Sprintf("https://127.0.0.1:%d", env.APIPort), filepath.Join(ca.Path, pki.CAFile), cert); err != nil {
		t.Fatal(err)
	}
	pluginConfig, pluginBinDir := credentialProviderFiles(t, env.RegistryHost)
	proc, err := harness.StartProcess("node "+node+" is ready", "node", "--kubeconfig", kc, "--name", node,
		"--data-dir", t.TempDir(), "--registry-host", env.RegistryHost,
		"--image-credential-provider-config", pluginConfig, "--image-credential-provider-bin-dir", pluginBinDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Stop()
		_ = env.Admin.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{})
	})

	pod := newPod(ns, "pinned", image)
	pod.Spec.NodeName = node
	// A pod that names a secret is not given its account's (the ServiceAccount
	// admission), and this one does not exist: only the plugin can pull.
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "not-there"}}
	if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitForCondition(t, ctx, ns, pod.Name, corev1.ConditionTrue, 30*time.Second)
	if msg := got.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, "node "+node) {
		t.Errorf("pulled by %q, want node %s", msg, node)
	}
	if msg := waitForEvent(t, ctx, ns, pod.Name, "Pulled"); !strings.Contains(msg, "credential provider plugin, with a token of service account "+ns+"/default") {
		t.Errorf("Pulled event %q: want the plugin's token of the pod's service account", msg)
	}
	n, err := env.Admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["node.pullgate.dev/pull-only"] != "true" || n.Status.NodeInfo.ContainerRuntimeVersion != "none://pull-only" {
		t.Errorf("node %s does not say it is pull-only: labels %v, runtime %q", node, n.Labels, n.Status.NodeInfo.ContainerRuntimeVersion)
	}
	// A node's identity reads only what its own pods need.
	nodeClient, err := kubernetes.NewForConfig(&rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", env.APIPort),
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(ca.Path, pki.CAFile), CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodeClient.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the node identity may list secrets; the Node authorizer should refuse")
	}
}

// credentialProviderFiles are a kubelet's credential provider flags for pullgate's
// plugin (bin/pullgate-credential-provider, which make build makes): the README's
// configuration for host.
func credentialProviderFiles(t *testing.T, host string) (config, binDir string) {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	binDir = filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(filepath.Dir(bin), credprovider.PluginName), filepath.Join(binDir, credprovider.PluginName)); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "credential-providers.yaml")
	if err := os.WriteFile(config, credprovider.KubeletConfig([]string{host}), 0o644); err != nil {
		t.Fatal(err)
	}
	return config, binDir
}

// A blob on the node that was truncated or overwritten is never given to a pod: the
// next use finds it, removes it, pulls it again, and says so on the pod.
func TestNodeReplacesCorruptBlobs(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	ns := createNamespace(t, ctx, "corrupt")
	waitForServiceAccount(t, ctx, ns, "default")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	content := make([]byte, 256<<10)
	_, _ = rand.Read(content)
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	pushFile(t, ctx, cfg, image, content)
	waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "first", image), corev1.ConditionTrue, 30*time.Second)

	out, err := harness.Crane(ctx, cfg, "manifest", image)
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal([]byte(out), &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest of %s: %v\n%s", image, err, out)
	}
	layer := m.Layers[0].Digest
	blob := filepath.Join(env.DataDir, "nodes", "local", "images", "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))
	info, err := os.Stat(blob)
	if err != nil {
		t.Fatalf("the node's copy of %s: %v", layer, err)
	}

	for _, tc := range []struct {
		name    string
		corrupt func() error
		policy  corev1.PullPolicy
	}{
		// A size that is wrong is seen whenever the copy is used.
		{"truncated", func() error { return os.Truncate(blob, info.Size()/2) }, corev1.PullIfNotPresent},
		// Content of the right size but wrong is seen by a pull, which hashes every blob it keeps.
		{"overwritten", func() error { return os.WriteFile(blob, make([]byte, info.Size()), 0o644) }, corev1.PullAlways},
		// 4 KiB of garbage written in place, size and modification time kept: the file's
		// change time moved, so the next pod's use hashes it first, even IfNotPresent.
		{"overwritten-in-place", func() error { return writeInPlace(blob, make([]byte, 4<<10)) }, corev1.PullIfNotPresent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corruptBefore := metricValue(t, "pullgate_node_corrupt_blobs_total")
			bytesBefore := metricValue(t, "pullgate_node_image_pull_bytes_total")
			if err := tc.corrupt(); err != nil {
				t.Fatal(err)
			}
			pod := newPod(ns, tc.name, image)
			pod.Spec.Containers[0].ImagePullPolicy = tc.policy
			if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			waitForCondition(t, ctx, ns, tc.name, corev1.ConditionTrue, 30*time.Second)
			if ev := waitForEvent(t, ctx, ns, tc.name, "CorruptBlobReplaced"); !strings.Contains(ev, layer) {
				t.Errorf("CorruptBlobReplaced event %q does not name blob %s", ev, layer)
			}
			if got := metricValue(t, "pullgate_node_corrupt_blobs_total"); got != corruptBefore+1 {
				t.Errorf("pullgate_node_corrupt_blobs_total went from %v to %v, want one more", corruptBefore, got)
			}
			if got := metricValue(t, "pullgate_node_image_pull_bytes_total"); got < bytesBefore+float64(info.Size()) {
				t.Errorf("%v bytes pulled after the corruption, want the layer's %d again", got-bytesBefore, info.Size())
			}
			data, err := os.ReadFile(blob)
			if err != nil || digest.FromBytes(data).String() != layer {
				t.Errorf("the node's copy of %s after the pull: %v (digest %s)", layer, err, digest.FromBytes(data))
			}
		})
	}
}

// writeInPlace writes data at the start of the file at name without replacing the file
// or changing its size, and sets its modification time back: a stray write.
func writeInPlace(name string, data []byte) error {
	info, err := os.Stat(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(name, info.ModTime(), info.ModTime())
}
