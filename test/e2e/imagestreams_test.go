package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/platform/kubeconfig"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

func openshiftImage(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: resource}
}

func adminDynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// tokenCLI is pullgate's CLI as the holder of token.
func tokenCLI(t *testing.T, user, token string) *cliEnv {
	t.Helper()
	cfg := env.TokenConfig(token)
	caData := cfg.CAData
	if len(caData) == 0 && cfg.CAFile != "" {
		var err error
		if caData, err = os.ReadFile(cfg.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := kubeconfig.Write(path, kubeconfig.New(user, cfg.Host, caData, &clientcmdapi.AuthInfo{Token: token})); err != nil {
		t.Fatal(err)
	}
	return &cliEnv{t: t, kubeconfig: path}
}

// getOpenShift reads an image.openshift.io object as JSON, decoded strictly into
// OpenShift's own type (github.com/openshift/api): a field OpenShift's API does not
// have is an error.
func getOpenShift(t *testing.T, ctx context.Context, out any, args ...string) {
	t.Helper()
	raw, err := env.Kubectl(ctx, append([]string{"get", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("kubectl get %s: %v", strings.Join(args, " "), err)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("kubectl get %s: not OpenShift's type: %v\n%s", strings.Join(args, " "), err, raw)
	}
}

// oc tag between projects, as OpenShift checks it: the user must be able to pull
// the source stream (imagestreams/layers get), through imagestreamtags and through a
// stream's spec alike; with the grant, the tag is in the registry (its blobs mounted)
// and pullable from the destination; oc tag -d takes it out of both.
func TestTagBetweenProjects(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	src, dst := createNamespace(t, ctx, "tagsrc"), createNamespace(t, ctx, "tagdst")
	digest := pushFile(t, ctx, dockerConfigFor(t, ctx, src, "pusher", "system:image-builder"), env.RegistryHost+"/"+src+"/app:v1", []byte("tag me"))
	devToken, err := env.Account(ctx, dst, "dev", "edit")
	if err != nil {
		t.Fatal(err)
	}
	dev := tokenCLI(t, "dev", devToken)
	devClient, err := dynamic.NewForConfig(env.TokenConfig(devToken))
	if err != nil {
		t.Fatal(err)
	}

	// The attack: a project's editor copying another project's image it may not pull.
	from := map[string]any{"kind": "ImageStreamImage", "namespace": src, "name": "app@" + digest}
	ist := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
		"metadata": map[string]any{"name": "app:stolen"}, "tag": map[string]any{"name": "stolen", "from": from}}}
	if _, err := devClient.Resource(openshiftImage("imagestreamtags")).Namespace(dst).Create(ctx, ist, metav1.CreateOptions{}); !apierrors.IsForbidden(err) ||
		!strings.Contains(err.Error(), "cannot pull from image stream "+src+"/app") || !strings.Contains(err.Error(), "system:image-puller") {
		t.Fatalf("tagging another project's image without the right to pull it: %v", err)
	}
	is := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
		"metadata": map[string]any{"name": "app"}, "spec": map[string]any{"tags": []any{map[string]any{"name": "stolen", "from": from}}}}}
	if _, err := devClient.Resource(openshiftImage("imagestreams")).Namespace(dst).Create(ctx, is, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("a stream whose spec tag takes another project's image: %v", err)
	}
	if res := dev.run(ctx, "-n", dst, "tag", src+"/app@"+digest, "app:stolen"); res.ExitCode == 0 {
		t.Fatalf("pullgate tag without the right to pull the source: exit 0\n%s", res.Stdout)
	}
	if _, err := adminDynamic(t).Resource(imageapi.GVR).Namespace(dst).Get(ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("refused tags left a stream behind: %v", err)
	}

	// Granted, as the refusal said.
	cli := newCLI(t)
	cli.ok(ctx, "", "policy", "add-role-to-user", "system:image-puller", "system:serviceaccount:"+dst+":dev", "-n", src)
	var res harness.Result
	harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		res = dev.run(ctx, "-n", dst, "tag", src+"/app@"+digest, "app:prod")
		return res.ExitCode == 0
	})
	if want := fmt.Sprintf("Tag app:prod set to %s/app@%s.\n", src, digest); res.Stdout != want {
		t.Fatalf("pullgate tag: exit %d\n%q\nwant %q\n%s", res.ExitCode, res.Stdout, want, res.Stderr)
	}
	puller := dockerConfigFor(t, ctx, dst, "puller", "system:image-puller")
	waitForPull(t, ctx, puller, env.RegistryHost+"/"+dst+"/app:prod", digest)

	var tag imagev1.ImageStreamTag
	getOpenShift(t, ctx, &tag, "istag", "app:prod", "-n", dst)
	if tag.Tag == nil || tag.Tag.From == nil || tag.Tag.From.Kind != "ImageStreamImage" || tag.Tag.From.Namespace != src || tag.Tag.From.Name != "app@"+digest ||
		tag.Tag.Generation == nil || tag.Generation < *tag.Tag.Generation {
		t.Errorf("istag app:prod: tag %+v, generation %d: want the spec tag from %s/app@%s, observed at its generation", tag.Tag, tag.Generation, src, digest)
	}
	if tag.Image.Name != digest || tag.Image.DockerImageReference != env.RegistryHost+"/"+dst+"/app@"+digest || len(tag.Image.DockerImageMetadata.Raw) == 0 || len(tag.Image.DockerImageLayers) != 1 {
		t.Errorf("istag app:prod image: %s at %s, metadata %d bytes, %d layers", tag.Image.Name, tag.Image.DockerImageReference, len(tag.Image.DockerImageMetadata.Raw), len(tag.Image.DockerImageLayers))
	}
	var stream imagev1.ImageStream
	getOpenShift(t, ctx, &stream, "is", "app", "-n", dst)
	if stream.Status.DockerImageRepository != env.RegistryHost+"/"+dst+"/app" || stream.Status.PublicDockerImageRepository == "" ||
		len(stream.Status.Tags) != 1 || stream.Status.Tags[0].Items[0].Image != digest || stream.Status.Tags[0].Items[0].Generation != stream.Generation {
		t.Errorf("imagestream app status: %+v (generation %d)", stream.Status, stream.Generation)
	}

	// An alias follows its source tag: a push to app:v1 moves app:latest.
	cli.ok(ctx, "Tag app:latest set up to track app:v1.\n", "-n", src, "tag", "--alias", "app:v1", "app:latest")
	moved := pushFile(t, ctx, dockerConfigFor(t, ctx, src, "pusher", "system:image-builder"), env.RegistryHost+"/"+src+"/app:v1", []byte("tag me again"))
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		out, err := env.Kubectl(ctx, "get", "istag", "app:latest", "-n", src, "-o", "jsonpath={.image.metadata.name}")
		return err == nil && out == moved
	}) {
		t.Errorf("the alias app:latest did not follow app:v1 to %s", moved)
	}

	dev.ok(ctx, fmt.Sprintf("Deleted tag %s/app:prod.\n", dst), "-n", dst, "tag", "-d", "app:prod")
	if out, err := harness.Crane(ctx, puller, "digest", env.RegistryHost+"/"+dst+"/app:prod"); err == nil {
		t.Errorf("the deleted tag still pulls: %s", out)
	}
	if out, err := env.Kubectl(ctx, "get", "istag", "-n", dst, "-o", "name"); err != nil || strings.Contains(out, "app:prod") {
		t.Errorf("the deleted tag is still listed: %v\n%s", err, out)
	}
}

// oc import-image with the project's pull secrets, chosen as the kubelet chooses
// them: refused without one (saying which registry and the command that fixes it,
// and making nothing), imported with one; a scheduled tag follows its source, and
// when its import fails the tag keeps its image and says why.
func TestImportImageWithProjectSecrets(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	regs := startSeedRegistries(t, ctx)
	ns := createNamespace(t, ctx, "import")
	cli := newCLI(t)
	developer := basicDockerConfig(t, map[string][2]string{regs.Private: {"developer", "dev-pass"}})
	from := regs.Private + "/imports/app:v1"
	want := pushFile(t, ctx, developer, from, []byte("imported"), regs.CAEnv)

	res := cli.run(ctx, "-n", ns, "import-image", "app:v1", "--from="+from, "--confirm")
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, regs.Private+" refused") || !strings.Contains(res.Stderr, "oc create secret docker-registry") {
		t.Fatalf("import without a credential: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if _, err := adminDynamic(t).Resource(imageapi.GVR).Namespace(ns).Get(ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a failed import made a stream: %v", err)
	}

	cli.ok(ctx, "", "-n", ns, "create", "secret", "docker-registry", "private", "--docker-server="+regs.Private, "--docker-username=main-user", "--docker-password=main-pass")
	res = cli.run(ctx, "-n", ns, "import-image", "app:v1", "--from="+from, "--confirm")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "imagestream.image.openshift.io/app imported") {
		t.Fatalf("import with the project's secret: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if by := regs.Pullers("imports/app", "v1"); len(by) == 0 || by[len(by)-1] != "main-user" {
		t.Errorf("the import read the image as %q, want main-user (the project's secret)", by)
	}
	var tag imagev1.ImageStreamTag
	getOpenShift(t, ctx, &tag, "istag", "app:v1", "-n", ns)
	if tag.Image.DockerImageReference != regs.Private+"/imports/app@"+want || tag.Tag == nil || tag.Tag.From.Kind != "DockerImage" || tag.Tag.From.Name != from {
		t.Errorf("imported istag: image %s, tag %+v", tag.Image.DockerImageReference, tag.Tag)
	}

	// --all: every tag of the repository.
	res = cli.run(ctx, "-n", ns, "import-image", "all", "--from="+regs.Private+"/imports/app", "--all", "--confirm")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "all:v1 imported from "+regs.Private+"/imports/app@"+want) {
		t.Errorf("import-image --all: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}

	// Scheduled (up runs with --image-import-interval=2s here): the tag follows a push
	// to its source.
	other := regs.Private + "/other/app:v1"
	cli.ok(ctx, "", "-n", ns, "tag", "--source=docker", other, "other:v1", "--scheduled")
	moved := pushFile(t, ctx, developer, other, []byte("other, moved"), regs.CAEnv)
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		out, err := env.Kubectl(ctx, "get", "istag", "other:v1", "-n", ns, "-o", "jsonpath={.image.metadata.name}")
		return err == nil && out == moved
	}) {
		t.Fatalf("the scheduled tag did not follow its source to %s", moved)
	}

	// Its credential gone, the next import fails: the tag keeps its image and says why.
	if err := env.Admin.CoreV1().Secrets(ns).Delete(ctx, "private", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var stream imagev1.ImageStream
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		getOpenShift(t, ctx, &stream, "is", "other", "-n", ns)
		return len(stream.Status.Tags) == 1 && len(stream.Status.Tags[0].Conditions) == 1
	}) {
		t.Fatalf("a failing scheduled import left no condition: %+v", stream.Status)
	}
	cond, items := stream.Status.Tags[0].Conditions[0], stream.Status.Tags[0].Items
	if cond.Type != imagev1.ImportSuccess || cond.Status != "False" || !strings.Contains(cond.Message, regs.Private) || len(items) == 0 || items[0].Image != moved {
		t.Errorf("failed scheduled import: condition %+v, items %+v", cond, items)
	}
}

// image.openshift.io ImageStreams, read-write as OpenShift serves them: kubectl
// apply, patch, watch and delete; the stored stream is pullgate's one record, and
// images and imagestreamimages describe what the registry holds.
func TestImageStreamsReadWrite(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	ns := createNamespace(t, ctx, "isrw")
	watcher, err := adminDynamic(t).Resource(openshiftImage("imagestreams")).Namespace(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Stop()
	manifest := filepath.Join(t.TempDir(), "is.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  lookupPolicy: {local: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 { // created, then unchanged
		if out, err := env.Kubectl(ctx, "apply", "-n", ns, "-f", manifest); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
	}
	select {
	case ev := <-watcher.ResultChan():
		u, ok := ev.Object.(*unstructured.Unstructured)
		if ev.Type != "ADDED" || !ok || u.GetAPIVersion() != "image.openshift.io/v1" || u.GetKind() != "ImageStream" || u.GetName() != "web" {
			t.Errorf("watch: %s %#v", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event for the applied stream")
	}
	if out, err := env.Kubectl(ctx, "patch", "is", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"lookupPolicy":{"local":true}}}`); err != nil {
		t.Fatalf("kubectl patch: %v\n%s", err, out)
	}
	var stream imagev1.ImageStream
	getOpenShift(t, ctx, &stream, "is", "web", "-n", ns)
	if !stream.Spec.LookupPolicy.Local || stream.Labels["app"] != "web" || stream.Status.DockerImageRepository != env.RegistryHost+"/"+ns+"/web" {
		t.Errorf("applied and patched stream: %+v", stream)
	}
	stored, err := adminDynamic(t).Resource(imageapi.GVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if local, _, _ := unstructured.NestedBool(stored.Object, "spec", "lookupPolicy", "local"); !local {
		t.Errorf("the patch is not in pullgate's stored stream: %v", stored.Object["spec"])
	}

	digest := pushFile(t, ctx, dockerConfigFor(t, ctx, ns, "pusher", "system:image-builder"), env.RegistryHost+"/"+ns+"/web:v1", []byte("web v1"))
	var isimage imagev1.ImageStreamImage
	getOpenShift(t, ctx, &isimage, "isimage", "web@"+digest, "-n", ns)
	var meta struct {
		Architecture string
		Size         int64
	}
	if err := json.Unmarshal(isimage.Image.DockerImageMetadata.Raw, &meta); err != nil || isimage.Image.Name != digest || meta.Size == 0 {
		t.Errorf("isimage web@%s: %+v, metadata %s (%v)", digest, isimage.Image.ObjectMeta, isimage.Image.DockerImageMetadata.Raw, err)
	}
	var images imagev1.ImageList
	getOpenShift(t, ctx, &images, "images")
	found := false
	for _, img := range images.Items {
		found = found || img.Name == digest && img.DockerImageReference == env.RegistryHost+"/"+ns+"/web@"+digest
	}
	if !found {
		t.Errorf("kubectl get images does not list %s", digest)
	}

	if out, err := env.Kubectl(ctx, "delete", "is", "web", "-n", ns); err != nil {
		t.Fatalf("kubectl delete: %v\n%s", err, out)
	}
	if _, err := adminDynamic(t).Resource(imageapi.GVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the stored stream after kubectl delete is: %v", err)
	}
}

// The image API's own account (oc tag's copies) holds registry rights only: through
// the API server, impersonated, it may not read secrets, run pods, write streams or
// bindings, and its tokens (bound to the registry's audience) are refused there.
func TestImageAPIAccountCannotEscalate(t *testing.T) {
	ctx := harness.Context(t, time.Minute)
	waitForOpenShiftAPIs(t, ctx)
	as := "system:serviceaccount:" + images.AccountNamespace + ":" + images.AccountName
	for _, try := range [][]string{
		{"get", "secrets", "-A"}, {"create", "pods", "-n", "default"}, {"update", "imagestreams.image.pullgate.dev", "-A"},
		{"create", "rolebindings", "-n", "default"}, {"create", "serviceaccounts/token", "-n", images.AccountNamespace},
		{"impersonate", "users"}, {"escalate", "clusterroles"}, {"create", "imagestreamtags.image.openshift.io", "-A"},
	} {
		out, err := env.Kubectl(ctx, append([]string{"auth", "can-i", "--as", as}, try...)...)
		if fields := strings.Fields(out); err == nil || len(fields) == 0 || fields[len(fields)-1] != "no" {
			t.Errorf("%s may %v: %q", as, try, out)
		}
	}
	tr, err := env.Admin.CoreV1().ServiceAccounts(images.AccountNamespace).CreateToken(ctx, images.AccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{tokenauth.Service}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(env.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("its registry-audience token at the API server: %v, want 401", err)
	}
}
