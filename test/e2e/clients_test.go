package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// registryClient pushes and pulls with one unmodified client, logging in with a
// Kubernetes token as the password.
type registryClient struct {
	name string
	// push copies src (already in the registry) to dst as the holder of token.
	push func(ctx context.Context, t *testing.T, src, dst, token string) (string, error)
	pull func(ctx context.Context, t *testing.T, image, token string) (string, error)
}

// run runs a client and returns its combined output; errors show the command
// without the credentials.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runCmd(exec.CommandContext(ctx, name, args...))
}

// runCmd is run of a command made already.
func runCmd(cmd *exec.Cmd) (string, error) {
	name, args := cmd.Args[0], cmd.Args[1:]
	out, err := cmd.CombinedOutput()
	if err != nil {
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = a
			if i > 0 && (args[i-1] == "--creds" || strings.HasSuffix(args[i-1], "-creds")) {
				shown[i] = "pullgate:<token>"
			}
		}
		return string(out), fmt.Errorf("%s %s: %w", name, strings.Join(shown, " "), err)
	}
	return string(out), nil
}

// podmanHome is podman with everything it keeps in a directory of its own: storage,
// runtime directory, configuration and temporary files — and, as an ordinary user,
// the pause process that holds its user namespace, which would otherwise outlive the
// test. All of it goes when the test ends.
type podmanHome struct {
	root string
	env  []string
}

func newPodman(t *testing.T) *podmanHome {
	// A short path: podman wants a short runroot.
	root, err := os.MkdirTemp("", "pm")
	if err != nil {
		t.Fatal(err)
	}
	p := &podmanHome{root: root}
	for _, d := range []string{"run", "config", "data", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p.env = append(os.Environ(), "XDG_RUNTIME_DIR="+filepath.Join(root, "run"), "XDG_CONFIG_HOME="+filepath.Join(root, "config"),
		"XDG_DATA_HOME="+filepath.Join(root, "data"), "TMPDIR="+filepath.Join(root, "tmp"))
	t.Cleanup(p.remove)
	return p
}

// command is podman args with this home's storage.
func (p *podmanHome) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--root", filepath.Join(p.root, "storage"),
		"--runroot", filepath.Join(p.root, "run", "storage"), "--storage-driver", "vfs"}, args...)...)
	cmd.Env = p.env
	return cmd
}

func (p *podmanHome) run(ctx context.Context, args ...string) (string, error) {
	return runCmd(p.command(ctx, args...))
}

// remove deletes the home; as an ordinary user the files of images (owned by mapped
// user IDs) are deleted from inside the user namespace, then its pause process ends.
func (p *podmanHome) remove() {
	if os.Geteuid() != 0 {
		_ = p.command(context.Background(), "unshare", "rm", "-rf", filepath.Join(p.root, "storage")).Run()
		if pid, err := os.ReadFile(filepath.Join(p.root, "run", "libpod", "tmp", "pause.pid")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
	}
	os.RemoveAll(p.root)
}

var clients = []registryClient{
	{
		name: "skopeo",
		push: func(ctx context.Context, t *testing.T, src, dst, token string) (string, error) {
			creds := "pullgate:" + token
			return run(ctx, "skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
				"--src-creds", creds, "--dest-creds", creds, "docker://"+src, "docker://"+dst)
		},
		pull: func(ctx context.Context, t *testing.T, image, token string) (string, error) {
			return run(ctx, "skopeo", "copy", "--src-tls-verify=false", "--src-creds", "pullgate:"+token,
				"docker://"+image, "dir:"+t.TempDir())
		},
	},
	{
		name: "podman",
		push: func(ctx context.Context, t *testing.T, src, dst, token string) (string, error) {
			creds := "pullgate:" + token
			pm := newPodman(t)
			if out, err := pm.run(ctx, "pull", "--tls-verify=false", "--creds", creds, src); err != nil {
				return out, err
			}
			return pm.run(ctx, "push", "--tls-verify=false", "--creds", creds, src, dst)
		},
		pull: func(ctx context.Context, t *testing.T, image, token string) (string, error) {
			return newPodman(t).run(ctx, "pull", "--tls-verify=false", "--creds", "pullgate:"+token, image)
		},
	},
}

// skopeo and podman, as they come: push as a project admin, pull as project-b's
// default service account, denied to project-a's until system:image-puller is granted.
func TestSkopeoAndPodmanFollowRBAC(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	projectA := createNamespace(t, ctx, "clients-a")
	projectB := createNamespace(t, ctx, "clients-b")
	waitForServiceAccount(t, ctx, projectA, "default")
	waitForServiceAccount(t, ctx, projectB, "default")
	source := env.RegistryHost + "/" + projectB + "/source:v1"
	adminCfg := dockerConfigFor(t, ctx, projectB, "pusher", "admin")
	pushImage(t, ctx, adminCfg, source)

	adminToken, err := env.ServiceAccountToken(ctx, projectB, "pusher")
	if err != nil {
		t.Fatal(err)
	}
	bToken, _ := env.ServiceAccountToken(ctx, projectB, "default")
	aToken, _ := env.ServiceAccountToken(ctx, projectA, "default")

	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "podman" {
				requireRootlessPodman(t)
			} else {
				requireCommand(t, c.name)
			}
			image := env.RegistryHost + "/" + projectB + "/" + c.name + ":v1"
			if out, err := c.push(ctx, t, source, image, adminToken); err != nil {
				t.Fatalf("push as project admin: %v\n%s", err, out)
			}
			if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
				_, err := c.pull(ctx, t, image, bToken)
				return err == nil
			}) {
				out, err := c.pull(ctx, t, image, bToken)
				t.Fatalf("pull as %s/default: %v\n%s", projectB, err, out)
			}
			out, err := c.pull(ctx, t, image, aToken)
			if err == nil {
				t.Fatalf("%s/default pulled from %s without system:image-puller", projectA, projectB)
			}
			assertDenied(t, out)

			binding := grantPuller(t, ctx, projectB, projectA, "default-"+c.name)
			if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
				_, err := c.pull(ctx, t, image, aToken)
				return err == nil
			}) {
				t.Fatalf("%s/default cannot pull after system:image-puller was granted", projectA)
			}
			if err := env.Admin.RbacV1().RoleBindings(projectB).Delete(ctx, binding, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if !harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
				_, err := c.pull(ctx, t, image, aToken)
				return err != nil
			}) {
				t.Fatalf("%s/default can still pull after the binding was removed", projectA)
			}
		})
	}
}

// grantPuller binds system:image-puller in ns to fromNS's default service account.
func grantPuller(t *testing.T, ctx context.Context, ns, fromNS, name string) string {
	t.Helper()
	_, err := env.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: fromNS}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}
