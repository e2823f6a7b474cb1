package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/pkg/credentials"
)

// The seed's cross-project story at the registry, with crane: a project admin pushes
// to project-b; project-b's default service account pulls; project-a's is denied
// until system:image-puller is granted in project-b, and denied again once the
// binding is removed.
func TestRegistryCrossProjectPullFollowsRBAC(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	projectA := createNamespace(t, ctx, "project-a")
	projectB := createNamespace(t, ctx, "project-b")
	for _, ns := range []string{projectA, projectB} {
		waitForServiceAccount(t, ctx, ns, "default")
	}
	image := env.RegistryHost + "/" + projectB + "/app:v1"

	adminCfg := dockerConfigFor(t, ctx, projectB, "pusher", "admin")
	digest := pushImage(t, ctx, adminCfg, image)

	// Every service account of project-b may pull there, through the
	// system:image-pullers binding the namespace gets.
	bCfg := dockerConfigFor(t, ctx, projectB, "default", "")
	waitForPull(t, ctx, bCfg, image, digest)

	aCfg := dockerConfigFor(t, ctx, projectA, "default", "")
	out, err := harness.Crane(ctx, aCfg, "digest", image)
	if err == nil {
		t.Fatalf("project-a's default SA pulled from project-b without system:image-puller")
	}
	assertDenied(t, out)
	for _, says := range []string{"system:serviceaccount:" + projectA + ":default may not pull from " + projectB + "/app",
		"system:image-puller", "pullgate policy add-role-to-user system:image-puller system:serviceaccount:" + projectA + ":default -n " + projectB} {
		if !strings.Contains(out, says) {
			t.Errorf("denied pull does not say %q:\n%s", says, out)
		}
	}

	binding, err := env.Admin.RbacV1().RoleBindings(projectB).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "project-a-pulls"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: projectA}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForPull(t, ctx, aCfg, image, digest)

	if err := env.Admin.RbacV1().RoleBindings(projectB).Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		_, err := harness.Crane(ctx, aCfg, "digest", image)
		return err != nil
	}) {
		t.Fatal("project-a's default SA can still pull after the binding was removed")
	}
}

// A push writes the ImageStream: tag → digest, synchronously.
func TestPushRecordsImageStream(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "streams")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "edit")
	digest := pushImage(t, ctx, cfg, env.RegistryHost+"/"+ns+"/web:1.0")

	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := dyn.Resource(imageapi.GVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("imagestream %s/web after push: %v", ns, err)
	}
	tags, _, _ := unstructured.NestedSlice(obj.Object, "status", "tags")
	if len(tags) != 1 {
		t.Fatalf("tags %v", tags)
	}
	tag := tags[0].(map[string]any)
	items := tag["items"].([]any)
	if tag["tag"] != "1.0" || items[0].(map[string]any)["digest"] != digest {
		t.Errorf("imagestream tag %v, want 1.0 → %s", tag, digest)
	}
	repo, _, _ := unstructured.NestedString(obj.Object, "status", "dockerImageRepository")
	if repo != env.RegistryHost+"/"+ns+"/web" {
		t.Errorf("dockerImageRepository %q", repo)
	}
	out, err := env.Kubectl(ctx, "-n", ns, "get", "imagestreams")
	if err != nil || !strings.Contains(out, "web") {
		t.Errorf("kubectl get imagestreams: %v\n%s", err, out)
	}
}

// The catalog lists only what the caller may pull.
func TestCatalogListsOnlyPullableRepositories(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	mine := createNamespace(t, ctx, "catalog-mine")
	theirs := createNamespace(t, ctx, "catalog-theirs")
	pushImage(t, ctx, dockerConfigFor(t, ctx, mine, "pusher", "admin"), env.RegistryHost+"/"+mine+"/app:v1")
	pushImage(t, ctx, dockerConfigFor(t, ctx, theirs, "pusher", "admin"), env.RegistryHost+"/"+theirs+"/app:v1")
	waitForServiceAccount(t, ctx, mine, "default")
	cfg := dockerConfigFor(t, ctx, mine, "default", "")

	var out string
	harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		out, _ = harness.Crane(ctx, cfg, "catalog", env.RegistryHost)
		return strings.Contains(out, mine+"/app")
	})
	if !strings.Contains(out, mine+"/app") || strings.Contains(out, theirs+"/app") {
		t.Errorf("catalog for %s/default:\n%s", mine, out)
	}
}

// A repository in a namespace that does not exist is NAME_UNKNOWN, with the fix.
func TestMissingNamespaceIsNameUnknown(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "cluster-admins")
	waitForServiceAccount(t, ctx, ns, "default")
	_, err := env.Admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), ns+"-admin", metav1.DeleteOptions{})
	})
	cfg := dockerConfigFor(t, ctx, ns, "default", "")
	var out string
	harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		out, _ = harness.Crane(ctx, cfg, "digest", env.RegistryHost+"/no-such-namespace/app:v1")
		return strings.Contains(out, "NAME_UNKNOWN")
	})
	if !strings.Contains(out, "NAME_UNKNOWN") || !strings.Contains(out, `namespace "no-such-namespace" does not exist`) {
		t.Errorf("pull from a missing namespace:\n%s", out)
	}
}

// dockerConfigFor makes service account ns/name (bound to clusterRole in ns when not
// empty) and returns a DOCKER_CONFIG logged in to the registry with its token.
func dockerConfigFor(t *testing.T, ctx context.Context, ns, name, clusterRole string) string {
	t.Helper()
	token, err := env.Account(ctx, ns, name, clusterRole)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := env.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// pushImage pushes a one-layer image with crane and returns its digest.
func pushImage(t *testing.T, ctx context.Context, dockerConfig, image string) string {
	t.Helper()
	return pushFile(t, ctx, dockerConfig, image, []byte(image))
}

// pushFile pushes a one-layer image holding content as hello.txt. RBAC granted a
// moment ago may take the registry's informers a moment to see.
func pushFile(t *testing.T, ctx context.Context, dockerConfig, image string, content []byte, extraEnv ...string) string {
	t.Helper()
	var digest string
	var err error
	harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		digest, err = harness.PushFile(ctx, dockerConfig, image, content, extraEnv...)
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return digest
}

func craneDigest(t *testing.T, ctx context.Context, dockerConfig, image string) string {
	t.Helper()
	out, err := harness.Crane(ctx, dockerConfig, "digest", image)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// waitForPull waits until the credentials in dockerConfig pull image at digest: RBAC
// changes reach the token service through its informers, a moment later.
func waitForPull(t *testing.T, ctx context.Context, dockerConfig, image, digest string) {
	t.Helper()
	var out string
	var err error
	if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		out, err = harness.Crane(ctx, dockerConfig, "digest", image)
		return err == nil && strings.TrimSpace(out) == digest
	}) {
		t.Fatalf("cannot pull %s: %v", image, err)
	}
}

func assertDenied(t *testing.T, out string) {
	t.Helper()
	lower := strings.ToLower(out)
	if !strings.Contains(lower, "401") && !strings.Contains(lower, "403") && !strings.Contains(lower, "unauthorized") && !strings.Contains(lower, "denied") {
		t.Errorf("denied pull does not say it was denied:\n%s", out)
	}
}

// `pullgate registry serve` runs against any cluster's API: here the embedded one,
// as a separate process with its own storage; it shares the token keys of up's registry (Secret pullgate-system/pullgate-registry-keys).
func TestRegistryServeAgainstAnyCluster(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	proc, err := harness.StartProcess("registry is serving", "registry", "serve",
		"--kubeconfig", env.Kubeconfig, "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--readiness-grace", "5s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Stop)
	host := fmt.Sprintf("localhost:%d", port)

	ns := createNamespace(t, ctx, "serve")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	token, err := env.ServiceAccountToken(ctx, ns, "pusher")
	if err != nil {
		t.Fatal(err)
	}
	// The same identity, logged in to the second registry.
	data, err := credentials.SetAuth(nil, host, credentials.Credential{Username: "x", Password: token}, credentials.Docker)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	digest := pushImage(t, ctx, cfg, host+"/"+ns+"/app:v1")
	if digest == "" {
		t.Fatalf("no digest; registry output:\n%s", proc.Output())
	}

	// On SIGTERM it says it is not ready while still serving, for --readiness-grace,
	// so a load balancer stops sending it requests; then it drains and exits.
	proc.Signal(syscall.SIGTERM)
	if !harness.Eventually(ctx, 3*time.Second, func(context.Context) bool {
		resp, err := http.Get("http://" + host + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	}) {
		t.Error("registry serve did not answer /healthz with 503 during its readiness grace")
	}
	if out, err := harness.Crane(ctx, cfg, "digest", host+"/"+ns+"/app:v1"); err != nil || strings.TrimSpace(out) != digest {
		t.Errorf("a pull during the readiness grace: %v %s", err, out)
	}
	select {
	case <-proc.Exited():
	case <-ctx.Done():
		t.Fatal("registry serve did not exit after SIGTERM")
	}
}

// Blob GETs over plain HTTP are served straight from the filesystem (buffered copy by
// default), whole and correct.
func TestBlobGetsBypassDistribution(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "sendfile")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	pushImage(t, ctx, cfg, image)
	layer := firstLayer(t, ctx, cfg, image)
	before := metricValue(t, "pullgate_registry_filesystem_blob_gets_total{transfer=\"buffered\"}")

	blob, err := harness.Crane(ctx, cfg, "blob", env.RegistryHost+"/"+ns+"/app@"+layer)
	if err != nil {
		t.Fatal(err)
	}
	if got := "sha256:" + fmt.Sprintf("%x", sha256.Sum256([]byte(blob))); got != layer {
		t.Errorf("blob content hashes to %s, want %s", got, layer)
	}
	if after := metricValue(t, "pullgate_registry_filesystem_blob_gets_total{transfer=\"buffered\"}"); after != before+1 {
		t.Errorf("filesystem blob GETs went from %v to %v, want one more", before, after)
	}
}

func metricValue(t *testing.T, name string) float64 {
	t.Helper()
	v, err := env.Metric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Bad input at the registry's door: oversize headers are refused before any work,
// and a manifest whose digest does not match its content is DIGEST_INVALID.
func TestRegistryRefusesBadInput(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.RegistryHost+"/v2/", nil)
	req.Header.Set("X-Padding", strings.Repeat("x", 128<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("128 KiB header: %s, want 431", resp.Status)
	}

	ns := createNamespace(t, ctx, "badinput")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	pushImage(t, ctx, cfg, env.RegistryHost+"/"+ns+"/app:v1")
	token, err := harness.Crane(ctx, cfg, "auth", "token", "--push", env.RegistryHost+"/"+ns+"/app")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.Unmarshal([]byte(token), &tok)
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
	wrong := "sha256:" + strings.Repeat("0", 64)
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, "http://"+env.RegistryHost+"/v2/"+ns+"/app/manifests/"+wrong, strings.NewReader(manifest))
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "DIGEST_INVALID") {
		t.Errorf("manifest under a wrong digest: %s %s, want 400 DIGEST_INVALID", resp.Status, body)
	}
}

// Anonymous pulls work only where RBAC grants system:unauthenticated the puller role.
func TestAnonymousPullOnlyWhereGranted(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "public")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest := pushImage(t, ctx, dockerConfigFor(t, ctx, ns, "pusher", "admin"), image)

	out, err := harness.Crane(ctx, "", "digest", image)
	if err == nil {
		t.Fatal("anonymous pull succeeded without any grant")
	}
	assertDenied(t, out)

	_, err = env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "anonymous-pull"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForPull(t, ctx, "", image, digest)
}

// Repositories nest inside a namespace, as helm push oci://…/team/charts and skopeo
// sync make them: each is an ImageStream of its own (a readable name and a hash,
// annotated with the path), pulled by pods and listed in the catalog like any other.
// A name with no namespace is refused, saying what a repository name looks like.
func TestNestedRepositories(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "nested")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	chart := env.RegistryHost + "/" + ns + "/charts/mychart:1.0"
	digest := pushFile(t, ctx, cfg, chart, []byte("a chart"))
	token, err := env.Account(ctx, ns, "pusher", "")
	if err != nil {
		t.Fatal(err)
	}
	synced := env.RegistryHost + "/" + ns + "/synced/app:v1"
	skopeo := requireCommand(t, "skopeo")
	creds := "pullgate:" + token
	if out, err := run(ctx, skopeo, "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", creds, "--dest-creds", creds,
		"docker://"+chart, "docker://"+synced); err != nil {
		t.Fatalf("skopeo copy to a nested repository: %v\n%s", err, out)
	}

	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	list, err := dyn.Resource(imageapi.GVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, is := range list.Items {
		paths[is.GetAnnotations()[imageapi.AnnotationRepository]] = is.GetName()
	}
	for _, path := range []string{ns + "/charts/mychart", ns + "/synced/app"} {
		if name := paths[path]; !strings.HasPrefix(name, strings.ReplaceAll(strings.TrimPrefix(path, ns+"/"), "/", "-")+"-") {
			t.Errorf("imagestream of %s: %q (all: %v)", path, name, paths)
		}
	}
	waitForServiceAccount(t, ctx, ns, "default")
	pod := waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "chart", chart), corev1.ConditionTrue, 30*time.Second)
	if id := pod.Status.ContainerStatuses[0].ImageID; !strings.HasSuffix(id, digest) {
		t.Errorf("pod pulled %s, want %s", id, digest)
	}
	if out, _ := harness.Crane(ctx, cfg, "catalog", env.RegistryHost); !strings.Contains(out, ns+"/charts/mychart") || !strings.Contains(out, ns+"/synced/app") {
		t.Errorf("catalog does not list the nested repositories:\n%s", out)
	}

	// A repository named as the nested one's stream is (charts-mychart-<hash>) is a
	// repository of its own: its tags do not merge into the nested one's.
	lookalike := env.RegistryHost + "/" + ns + "/" + paths[ns+"/charts/mychart"] + ":2.0"
	pushFile(t, ctx, cfg, lookalike, []byte("another chart"))
	if out, _ := harness.Crane(ctx, cfg, "ls", env.RegistryHost+"/"+ns+"/charts/mychart"); strings.TrimSpace(out) != "1.0" {
		t.Errorf("tags of %s/charts/mychart after a push to its look-alike %s: %q, want 1.0", ns, lookalike, out)
	}
	if out, _ := harness.Crane(ctx, cfg, "ls", strings.TrimSuffix(lookalike, ":2.0")); strings.TrimSpace(out) != "2.0" {
		t.Errorf("tags of the look-alike %s: %q, want 2.0", lookalike, out)
	}

	out, err := harness.Crane(ctx, cfg, "append", "-f", "/dev/null", "-t", env.RegistryHost+"/lonely:v1")
	if err == nil || !strings.Contains(out, "a repository is <namespace>/<path>") {
		t.Errorf("a push to a repository with no namespace: %v\n%s", err, out)
	}
}

// Deleting a namespace's system:image-pullers binding revokes nothing: it is back at
// once, as on OpenShift. Emptying it is how a namespace opts out, and it stays empty.
func TestImagePullersOptOut(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "optout")
	pusher := dockerConfigFor(t, ctx, ns, "pusher", "admin")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest := pushFile(t, ctx, pusher, image, []byte("opt out"))
	reader := dockerConfigFor(t, ctx, ns, "reader", "")
	waitForPull(t, ctx, reader, image, digest)
	bindings := env.Admin.RbacV1().RoleBindings(ns)

	if err := bindings.Delete(ctx, "system:image-pullers", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		b, err := bindings.Get(ctx, "system:image-pullers", metav1.GetOptions{})
		return err == nil && len(b.Subjects) == 1
	}) {
		t.Fatal("a deleted system:image-pullers was not re-created")
	}

	if _, err := env.Kubectl(ctx, "-n", ns, "patch", "rolebinding", "system:image-pullers", "--type=json", "-p", `[{"op":"remove","path":"/subjects"}]`); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err := harness.Crane(ctx, reader, "digest", image)
		return err != nil
	}) {
		t.Fatal("the namespace's own account still pulls after system:image-pullers was emptied")
	}
	// The controller has seen the namespace since (it re-created another binding):
	// the emptied one is still empty.
	if err := bindings.Delete(ctx, "system:deployers", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		_, err := bindings.Get(ctx, "system:deployers", metav1.GetOptions{})
		return err == nil
	}) {
		t.Fatal("system:deployers was not re-created")
	}
	if b, err := bindings.Get(ctx, "system:image-pullers", metav1.GetOptions{}); err != nil || len(b.Subjects) != 0 {
		t.Errorf("system:image-pullers after the controller's pass: %v %+v, want it empty", err, b)
	}
}
