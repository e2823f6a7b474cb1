package realnode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/node/kubelet"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/pkg/credentials"
)

// registryServiceIP is the deployed registry's Service address: nodes do not resolve
// cluster DNS names (containerd asks the host's resolver), so clients and the node
// reach the registry by an address fixed in the Service.
const registryServiceIP = "10.96.100.100"

// deploy/ installed on the real node as the README says (the image from make image's
// builder in up's registry, S3 from the Versity S3 Gateway, 3 registry replicas, 2 controllers):
// the replicas become Ready, push and pull work through the registry's Service and a
// pod runs from it, a deleted registry pod loses nothing acknowledged and is
// replaced, and deploy/node installs the credential provider on the node.
func TestDeployOnTheRealNode(t *testing.T) {
	needRealNode(t)
	ctx := harness.Context(t, 10*time.Minute)
	e := kubeletEnv
	root := moduleRoot(t)
	work := t.TempDir()
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := e.Kubectl(ctx, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	t.Cleanup(func() { undeploy(e) })
	t.Cleanup(func() {
		if t.Failed() {
			diagnose(t, e)
		}
	})

	// S3 on the node's address, where pods reach it.
	nodeIP := internalIP(t, ctx, e)
	s3Dir := filepath.Join(work, "s3")
	if err := os.Mkdir(s3Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s3, err := harness.StartS3On(s3Dir, "pullgate", nodeIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Stop)

	// The image, as make image builds it, pushed to up's registry; pullgate-system's
	// and pullgate-node's service accounts may pull it (the kubelet pulls with the
	// pod's own token through the credential provider).
	image := e.RegistryHost + "/pullgate-system/pullgate:test"
	token, err := e.Account(ctx, "pullgate-system", "image-pusher", "system:image-builder")
	if err != nil {
		t.Fatal(err)
	}
	pushConfig, err := e.DockerConfig(work, token)
	if err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "run", "./hack/image", "-binary", e.Bin, "-version", "test", "-push", image)
	build.Dir = root
	build.Env = append(os.Environ(), "DOCKER_CONFIG="+pushConfig, "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("hack/image: %v\n%s", err, out)
	}
	grantImage(t, ctx, e, "pullgate-system", "pullgate-node")

	// The two Secrets, as the README's commands make them.
	kubectl("-n", "pullgate-system", "create", "secret", "generic", "pullgate-s3",
		"--from-literal=bucket="+s3.Bucket, "--from-literal=region=us-east-1", "--from-literal=regionendpoint="+s3.Endpoint,
		"--from-literal=forcepathstyle=true", "--from-literal=secure=false", "--from-literal=accesskey="+s3.AccessKey, "--from-literal=secretkey="+s3.SecretKey)
	ca, err := pki.Open(filepath.Join(e.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServingCert("deployed-registry", []string{"pullgate-registry.pullgate-system.svc", registryServiceIP})
	if err != nil {
		t.Fatal(err)
	}
	kubectl("-n", "pullgate-system", "create", "secret", "tls", "pullgate-registry-tls", "--cert="+cert.CertFile, "--key="+cert.KeyFile)

	// deploy/ with the README's edits (the image, the registry's host name) as an
	// overlay.
	registryHost := registryServiceIP + ":5000"
	kubectl("apply", "--server-side", "-k", overlay(t, root, work, "deploy", image, registryHost))
	kubectl("-n", "pullgate-system", "rollout", "status", "deployment/pullgate-registry", "--timeout=3m")
	kubectl("-n", "pullgate-system", "rollout", "status", "deployment/pullgate-controllers", "--timeout=3m")

	// Push and pull through the Service, from this host as a client would, trusting
	// up's CA; the node trusts it too, as its administrator would make it.
	caEnv := "SSL_CERT_FILE=" + filepath.Join(ca.Path, pki.CAFile)
	if err := kubelet.TrustRegistry(filepath.Join(e.DataDir, "nodes", "local"), registryHost, filepath.Join(ca.Path, pki.CAFile)); err != nil {
		t.Fatal(err)
	}
	waitServing(t, ctx, "https://"+registryHost+"/healthz", filepath.Join(ca.Path, pki.CAFile))
	ns := newProject(t, ctx, e, "deployed")
	pusher, err := e.Account(ctx, ns, "pusher", "system:image-builder")
	if err != nil {
		t.Fatal(err)
	}
	cfg := harness.DockerConfigFor(t, registryHost, credentials.Credential{Username: "pullgate", Password: pusher})
	acknowledged := map[string]string{}
	push := func(name string) {
		t.Helper()
		ref := registryHost + "/" + ns + "/" + name
		digest, err := harness.PushFile(ctx, cfg, ref, []byte(ref+time.Now().String()), caEnv)
		if err != nil {
			t.Fatalf("push %s through the Service: %v", ref, err)
		}
		acknowledged[ref] = digest
	}
	for i := range 5 {
		push(fmt.Sprintf("data:%d", i))
	}
	app := registryHost + "/" + ns + "/app:v1"
	pushRunnable(t, ctx, cfg, app, caEnv)
	data, err := os.ReadFile(filepath.Join(cfg, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "deployed"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, msg := outcome(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", app, "deployed")); got != pulled {
		t.Fatalf("a pod from the deployed registry was %s: %s", got, msg)
	}

	// A registry pod deleted: pushes go on through the Service while it stops, the
	// Deployment replaces it, and every acknowledged image pulls whole.
	victim := strings.Fields(kubectl("-n", "pullgate-system", "get", "pods", "-l", "app.kubernetes.io/name=pullgate-registry",
		"-o", "jsonpath={.items[0].metadata.name}"))[0]
	kubectl("-n", "pullgate-system", "delete", "pod", victim, "--wait=false")
	for i := range 5 {
		push(fmt.Sprintf("during:%d", i))
	}
	kubectl("-n", "pullgate-system", "wait", "--for=delete", "pod/"+victim, "--timeout=2m")
	kubectl("-n", "pullgate-system", "rollout", "status", "deployment/pullgate-registry", "--timeout=3m")
	if ready := kubectl("-n", "pullgate-system", "get", "deployment/pullgate-registry", "-o", "jsonpath={.status.readyReplicas}"); ready != "3" {
		t.Errorf("after the deletion %s registry replicas are ready, want 3", ready)
	}
	for ref, digest := range acknowledged {
		if out, err := harness.CraneEnv(ctx, cfg, []string{caEnv}, "validate", "--remote", ref+"@"+digest); err != nil {
			t.Errorf("acknowledged %s@%s does not pull whole: %v: %s", ref, digest, err, out)
		}
	}

	// deploy/node: the DaemonSet puts the plugin and its configuration on the node
	// (here into directories of the test, not the host's /usr/local and /etc).
	binDir, configDir := filepath.Join(work, "kubelet-plugins"), filepath.Join(work, "etc-kubernetes")
	kubectl("apply", "--server-side", "-k", nodeOverlay(t, root, work, image, registryHost, binDir, configDir))
	kubectl("-n", "pullgate-node", "rollout", "status", "daemonset/pullgate-credential-provider", "--timeout=3m")
	// The DaemonSet's pod is Running before its installer has written: wait for both.
	configFile, plugin := filepath.Join(configDir, "credential-providers.yaml"), filepath.Join(binDir, "pullgate-credential-provider")
	if !harness.Eventually(ctx, time.Minute, func(context.Context) bool {
		config, err := os.ReadFile(configFile)
		fi, statErr := os.Stat(plugin)
		return err == nil && strings.Contains(string(config), registryHost) && statErr == nil && fi.Mode()&0o111 != 0
	}) {
		config, err := os.ReadFile(configFile)
		t.Errorf("deploy/node did not install an executable %s and a configuration naming %s in %s: %v\n%s", plugin, registryHost, configFile, err, config)
	}
}

// waitServing waits until url answers 200 over TLS trusting caFile: kube-proxy
// programs a Service's new endpoints a moment after the pods are Ready.
func waitServing(t *testing.T, ctx context.Context, url, caFile string) {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: http.ProxyFromEnvironment}, Timeout: 5 * time.Second}
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("%s does not answer through the Service", url)
	}
}

// internalIP is node local's InternalIP.
func internalIP(t *testing.T, ctx context.Context, e *harness.Env) string {
	t.Helper()
	node, err := e.Admin.CoreV1().Nodes().Get(ctx, "local", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	t.Fatal("node local has no InternalIP")
	return ""
}

// grantImage lets the service accounts of namespaces pull from pullgate-system.
func grantImage(t *testing.T, ctx context.Context, e *harness.Env, namespaces ...string) {
	t.Helper()
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pullgate-image-pullers"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
	}
	for _, ns := range namespaces {
		b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:" + ns})
	}
	if _, err := e.Admin.RbacV1().RoleBindings("pullgate-system").Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// overlay is a kustomization over root/base with the README's edits: the image
// (deploy's kustomization names it registry.example.com/pullgate/pullgate), the
// registry's host name, and the Service's address.
func overlay(t *testing.T, root, work, base, image, registryHost string) string {
	t.Helper()
	name, tag := splitTag(image)
	return writeOverlay(t, root, work, base, fmt.Sprintf(`images:
  - name: registry.example.com/pullgate/pullgate
    newName: %s
    newTag: %s
patches:
  - target: {kind: Deployment, name: pullgate-registry}
    patch: |-
      - {op: test, path: /spec/template/spec/containers/0/args/3, value: "--hostname=pullgate-registry.pullgate-system.svc:5000"}
      - {op: replace, path: /spec/template/spec/containers/0/args/3, value: "--hostname=%[3]s"}
  - target: {kind: Deployment, name: pullgate-controllers}
    patch: |-
      - {op: test, path: /spec/template/spec/containers/0/args/1, value: "--registry-host=pullgate-registry.pullgate-system.svc:5000"}
      - {op: replace, path: /spec/template/spec/containers/0/args/1, value: "--registry-host=%[3]s"}
  - target: {kind: Service, name: pullgate-registry}
    patch: |-
      - {op: add, path: /spec/clusterIP, value: %[4]s}
`, name, tag, registryHost, registryServiceIP))
}

// nodeOverlay is deploy/node with the image, the registry's host and the two host
// directories replaced.
func nodeOverlay(t *testing.T, root, work, image, registryHost, binDir, configDir string) string {
	t.Helper()
	repo, tag := splitTag(image)
	return writeOverlay(t, root, work, filepath.Join("deploy", "node"), fmt.Sprintf(`images:
  - name: registry.example.com/pullgate/pullgate
    newName: %s
    newTag: %s
patches:
  - target: {kind: DaemonSet, name: pullgate-credential-provider}
    patch: |-
      - {op: test, path: /spec/template/spec/containers/0/args/2, value: "--registry-host=pullgate-registry.pullgate-system.svc:5000"}
      - {op: replace, path: /spec/template/spec/containers/0/args/2, value: "--registry-host=%s"}
      - {op: test, path: /spec/template/spec/volumes/0/hostPath/path, value: /usr/local/lib/kubelet-plugins}
      - {op: replace, path: /spec/template/spec/volumes/0/hostPath/path, value: %s}
      - {op: test, path: /spec/template/spec/volumes/1/hostPath/path, value: /etc/kubernetes}
      - {op: replace, path: /spec/template/spec/volumes/1/hostPath/path, value: %s}
`, repo, tag, registryHost, binDir, configDir))
}

// splitTag is image's repository and tag (image has a tag, its registry a port).
func splitTag(image string) (string, string) {
	i := strings.LastIndex(image, ":")
	return image[:i], image[i+1:]
}

func writeOverlay(t *testing.T, root, work, base, body string) string {
	t.Helper()
	dir, err := os.MkdirTemp(work, "overlay-")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, filepath.Join(root, base))
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel + "\n" + body
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// diagnose logs what the deployment's pods say, for a failed test.
func diagnose(t *testing.T, e *harness.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"-n", "pullgate-system", "get", "pods,events", "-o", "wide"},
		{"-n", "pullgate-system", "logs", "-l", "app.kubernetes.io/name=pullgate-registry", "--tail=20", "--prefix"},
		{"-n", "pullgate-system", "logs", "-l", "app.kubernetes.io/name=pullgate-controllers", "--tail=20", "--prefix"},
		{"-n", "pullgate-node", "get", "pods,events", "-o", "wide"},
	} {
		out, err := e.Kubectl(ctx, args...)
		t.Logf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, args := range [][]string{{"ip", "route"}, {"iptables-save", "-t", "nat"}} {
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		t.Logf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// undeploy removes what the test installed but up's own objects (the namespace,
// the CRD, the roles and identities deploy/ shares with up).
func undeploy(e *harness.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _ = e.Kubectl(ctx, "-n", "pullgate-system", "delete", "--ignore-not-found", "--wait=false",
		"deployment/pullgate-registry", "deployment/pullgate-controllers", "service/pullgate-registry",
		"poddisruptionbudget/pullgate-registry", "poddisruptionbudget/pullgate-controllers",
		"networkpolicy/default-deny-ingress", "networkpolicy/pullgate-registry",
		"secret/pullgate-s3", "secret/pullgate-registry-tls", "rolebinding/pullgate-image-pullers")
	_, _ = e.Kubectl(ctx, "delete", "namespace", "pullgate-node", "--ignore-not-found", "--wait=false")
	_, _ = e.Kubectl(ctx, "-n", "pullgate-system", "wait", "--for=delete", "pods", "--all", "--timeout=90s")
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
