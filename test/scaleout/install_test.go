package scaleout

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// The install manifests are what the real API server accepts, as the README's
// install command applies them (server-side, validated by the API server, nothing
// written), and every pod they make meets the restricted Pod Security level.
func TestInstallManifestsValidate(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	root := moduleRoot(t)
	// Where up runs, deploy/ shares up's roles (equal to the byte) and adds bindings
	// of its own: no conflict, nothing of up's taken away.
	out, err := env.Kubectl(ctx, "apply", "--server-side", "--dry-run=server", "-k", filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/imagestreams.image.pullgate.dev serverside-applied (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/pullgate:registry serverside-applied (server dry run)",
		"clusterrole.rbac.authorization.k8s.io/pullgate:controllers serverside-applied (server dry run)",
		"role.rbac.authorization.k8s.io/pullgate:registry serverside-applied (server dry run)",
		"serviceaccount/pullgate-registry serverside-applied (server dry run)",
		"validatingadmissionpolicy.admissionregistration.k8s.io/pullgate-identities serverside-applied (server dry run)",
		"deployment.apps/pullgate-registry serverside-applied (server dry run)",
		"deployment.apps/pullgate-controllers serverside-applied (server dry run)",
		"service/pullgate-registry serverside-applied (server dry run)",
		"poddisruptionbudget.policy/pullgate-registry serverside-applied (server dry run)",
		"networkpolicy.networking.k8s.io/pullgate-registry serverside-applied (server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply did not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Warning") {
		t.Errorf("the API server warned about the manifests:\n%s", out)
	}
	// The credential provider's DaemonSet, in a namespace of its own: made for real
	// first, as a dry run cannot put an object into a namespace it only pretended to
	// make (deploy/'s namespace is up's own).
	if _, err := env.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(root, "deploy", "node", "namespace.yaml")); err != nil {
		t.Fatal(err)
	}
	out, err = env.Kubectl(ctx, "apply", "--server-side", "--dry-run=server", "-k", filepath.Join(root, "deploy", "node"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"namespace/pullgate-node serverside-applied (server dry run)",
		"daemonset.apps/pullgate-credential-provider serverside-applied (server dry run)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply -k deploy/node did not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Warning") {
		t.Errorf("the API server warned about deploy/node:\n%s", out)
	}
}

// `make image`'s builder makes an image of the static binary with no Docker daemon
// and pushes it to pullgate's own registry; what comes back runs, as a non-root user.
func TestImagePushesToPullgatesOwnRegistry(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	root := moduleRoot(t)
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t, ctx, "image")
	token, err := env.Account(ctx, ns, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	dockerConfig := harness.DockerConfigFor(t, env.RegistryHost, credentials.Credential{Username: "pullgate", Password: token})
	ref := env.RegistryHost + "/" + ns + "/pullgate:test"
	build := exec.CommandContext(ctx, "go", "run", "./hack/image", "-binary", bin, "-version", "test", "-push", ref)
	build.Dir = root
	build.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("hack/image: %v\n%s", err, out)
	}
	config, err := harness.Crane(ctx, dockerConfig, "config", ref)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Config struct {
			User       string
			Entrypoint []string
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || strings.Join(cfg.Config.Entrypoint, " ") != "/usr/local/bin/pullgate" {
		t.Errorf("image config: user %q, entrypoint %v", cfg.Config.User, cfg.Config.Entrypoint)
	}
	// Pulled back and unpacked, the binary runs.
	fs := filepath.Join(t.TempDir(), "fs.tar")
	if _, err := harness.Crane(ctx, dockerConfig, "export", ref, fs); err != nil {
		t.Fatal(err)
	}
	extracted := extract(t, fs, "usr/local/bin/pullgate")
	out, err := exec.CommandContext(ctx, extracted, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pullgate") {
		t.Fatalf("the image's binary: %v\n%s", err, out)
	}
	if _, err := os.Stat(extract(t, fs, "etc/ssl/certs/ca-certificates.crt")); err != nil {
		t.Error("the image has no CA bundle")
	}
	// The credential provider deploy/node installs from it answers the kubelet.
	plugin := exec.CommandContext(ctx, extract(t, fs, "usr/local/bin/pullgate-credential-provider"), "--registry-host", env.RegistryHost)
	plugin.Stdin = strings.NewReader(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"docker.io/library/busybox"}`)
	if out, err := plugin.Output(); err != nil || !strings.Contains(string(out), `"kind":"CredentialProviderResponse"`) {
		t.Errorf("the image's credential provider: %v\n%s", err, out)
	}
}

func extract(t *testing.T, tarFile, name string) string {
	t.Helper()
	f, err := os.Open(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s is not in the image: %v", name, err)
		}
		if strings.TrimPrefix(h.Name, "/") != name {
			continue
		}
		out := filepath.Join(t.TempDir(), filepath.Base(name))
		w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		w.Close()
		return out
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
