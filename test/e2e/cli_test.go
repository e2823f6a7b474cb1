package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"pullgate.dev/pullgate/internal/harness"
)

// cliEnv runs `pullgate` CLI commands against up, with a kubeconfig of its own (the
// CLI may switch its namespace, as oc does).
type cliEnv struct {
	t          *testing.T
	kubeconfig string
}

func newCLI(t *testing.T) *cliEnv {
	data, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return &cliEnv{t: t, kubeconfig: path}
}

// run runs pullgate with args, the seed's way of writing them, and returns its result.
func (c *cliEnv) run(ctx context.Context, args ...string) harness.Result {
	c.t.Helper()
	res, err := harness.Run(ctx, harness.RunOptions{Env: []string{"KUBECONFIG=" + c.kubeconfig}}, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

// ok runs a command that must succeed and print exactly golden on stdout.
func (c *cliEnv) ok(ctx context.Context, golden string, args ...string) {
	c.t.Helper()
	res := c.run(ctx, args...)
	if res.ExitCode != 0 {
		c.t.Fatalf("pullgate %s: exit %d\n%s%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
	}
	if golden != "" && res.Stdout != golden {
		c.t.Errorf("pullgate %s printed\n%q\nwant\n%q", strings.Join(args, " "), res.Stdout, golden)
	}
}

// The seed's first procedure, verbatim with pullgate for oc: cross-project pulls by
// one service account, then by every service account of a project, seen on pods.
// Each command run twice changes nothing the second time.
func TestSeedCrossProjectCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := newCLI(t)
	suffix := rand.String(5)
	projectA, projectA2, projectB := "project-a-"+suffix, "project-a2-"+suffix, "project-b-"+suffix
	for _, p := range []string{projectA, projectA2, projectB} {
		cli.ok(ctx, "Now using project \""+p+"\" on server \"https://127.0.0.1:"+itoa(env.APIPort)+"\".\n", "new-project", p)
		t.Cleanup(func() { _ = env.Admin.CoreV1().Namespaces().Delete(context.Background(), p, metav1.DeleteOptions{}) })
		waitForServiceAccount(t, ctx, p, "default")
	}
	image := env.RegistryHost + "/" + projectB + "/app:v1"
	pushImage(t, ctx, dockerConfigFor(t, ctx, projectB, "pusher", "admin"), image)

	podA := createPod(t, ctx, projectA, "app", image)
	waitForWaiting(t, ctx, projectA, podA, "ImagePullBackOff", 30*time.Second)

	seed1 := []string{"policy", "add-role-to-user",
		"system:image-puller", "system:serviceaccount:" + projectA + ":default",
		"--namespace=" + projectB}
	golden1 := "clusterrole.rbac.authorization.k8s.io/system:image-puller added: \"system:serviceaccount:" + projectA + ":default\"\n"
	cli.ok(ctx, golden1, seed1...)
	before := bindingVersions(t, ctx, projectB)
	cli.ok(ctx, golden1, seed1...)
	if after := bindingVersions(t, ctx, projectB); after != before {
		t.Errorf("running add-role-to-user twice changed the bindings:\n%s\n%s", before, after)
	}
	waitForCondition(t, ctx, projectA, podA, corev1.ConditionTrue, 90*time.Second)

	podA2 := createPod(t, ctx, projectA2, "app", image)
	waitForWaiting(t, ctx, projectA2, podA2, "ImagePullBackOff", 30*time.Second)
	seed2 := []string{"policy", "add-role-to-group",
		"system:image-puller", "system:serviceaccounts:" + projectA2,
		"--namespace=" + projectB}
	cli.ok(ctx, "clusterrole.rbac.authorization.k8s.io/system:image-puller added: \"system:serviceaccounts:"+projectA2+"\"\n", seed2...)
	waitForCondition(t, ctx, projectA2, podA2, corev1.ConditionTrue, 90*time.Second)

	// oc made one binding per run, named after the role, then -0.
	rb, err := env.Admin.RbacV1().RoleBindings(projectB).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, b := range rb.Items {
		names[b.Name] = true
	}
	if !names["system:image-puller"] || !names["system:image-puller-0"] {
		t.Errorf("bindings %v, want system:image-puller and system:image-puller-0 as oc names them", names)
	}

	res := cli.run(ctx, "policy", "who-can", "get", "imagestreams/layers", "-n", projectB)
	if head := "Namespace: " + projectB + "\nVerb:      get\nResource:  imagestreams.image.pullgate.dev/layers\n\nUsers:  "; !strings.HasPrefix(res.Stdout, head) {
		t.Errorf("who-can printed\n%s\nwant it to start with\n%s", res.Stdout, head)
	}
	for _, says := range []string{"system:serviceaccount:" + projectA + ":default", "system:serviceaccounts:" + projectA2} {
		if !strings.Contains(res.Stdout, says) {
			t.Errorf("who-can does not list %s:\n%s", says, res.Stdout)
		}
	}

	cli.ok(ctx, "clusterrole.rbac.authorization.k8s.io/system:image-puller removed: \"system:serviceaccount:"+projectA+":default\"\n",
		"policy", "remove-role-from-user", "system:image-puller", "system:serviceaccount:"+projectA+":default", "-n", projectB)
	if _, err := env.Admin.RbacV1().RoleBindings(projectB).Get(ctx, "system:image-puller", metav1.GetOptions{}); err == nil {
		t.Error("the binding left with no subject was not deleted")
	}
}

// The seed's second procedure: pull secrets made from a Docker config.json, a
// Podman auth.json and the four docker-registry flags, each linked with
// `secrets link default NAME --for=pull`; a pod in a project with no access of its
// own then pulls with it. A broken file is refused, and nothing is created.
func TestSeedPullSecretCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := newCLI(t)
	owner := createNamespace(t, ctx, "owner")
	image := env.RegistryHost + "/" + owner + "/app:v1"
	pushImage(t, ctx, dockerConfigFor(t, ctx, owner, "pusher", "admin"), image)
	// A credential that may pull from owner: the token of owner's puller account.
	if _, err := env.Admin.CoreV1().ServiceAccounts(owner).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := env.ServiceAccountToken(ctx, owner, "puller")
	if err != nil {
		t.Fatal(err)
	}
	dockerDir, err := env.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	dockerConfig := filepath.Join(dockerDir, "config.json")
	authJSON := filepath.Join(t.TempDir(), "auth.json")
	data, _ := os.ReadFile(dockerConfig)
	if err := os.WriteFile(authJSON, data, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args func(ns, secret string) []string
	}{
		{"docker-config-json", func(ns, secret string) []string {
			return []string{"create", "secret", "generic", secret, "--from-file=.dockerconfigjson=" + dockerConfig, "--type=kubernetes.io/dockerconfigjson", "-n", ns}
		}},
		{"podman-auth-json", func(ns, secret string) []string {
			return []string{"create", "secret", "generic", secret, "--from-file=" + authJSON, "--type=kubernetes.io/podmanconfigjson", "-n", ns}
		}},
		{"docker-registry", func(ns, secret string) []string {
			return []string{"create", "secret", "docker-registry", secret, "--docker-server=" + env.RegistryHost,
				"--docker-username=developer@example.com", "--docker-password=" + token, "--docker-email=unused", "-n", ns}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := createNamespace(t, ctx, "consumer")
			waitForServiceAccount(t, ctx, ns, "default")
			cli.ok(ctx, "secret/pull-secret created\n", tc.args(ns, "pull-secret")...)
			cli.ok(ctx, "", "secrets", "link", "default", "pull-secret", "--for=pull", "-n", ns)
			cli.ok(ctx, "", "secrets", "link", "default", "pull-secret", "--for=pull", "-n", ns)
			sa, err := env.Admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if n := countRefs(sa, "pull-secret"); n != 1 {
				t.Fatalf("default lists pull-secret %d times, want once: %v", n, sa.ImagePullSecrets)
			}
			pod := createPod(t, ctx, ns, "app", image)
			waitForCondition(t, ctx, ns, pod, corev1.ConditionTrue, 30*time.Second)
		})
	}

	ns := createNamespace(t, ctx, "refused")
	broken := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(broken, []byte(`{"auths": {"quay.io": {"auth": "dXNlcjpw`), 0o600); err != nil {
		t.Fatal(err)
	}
	res := cli.run(ctx, "create", "secret", "generic", "broken", "--from-file=.dockerconfigjson="+broken, "--type=kubernetes.io/dockerconfigjson", "-n", ns)
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, broken) || strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 {
		t.Errorf("broken file: exit %d, stderr %q; want exit 1 and one line naming the file", res.ExitCode, res.Stderr)
	}
	if _, err := env.Admin.CoreV1().Secrets(ns).Get(ctx, "broken", metav1.GetOptions{}); err == nil {
		t.Error("a secret was created from a broken file")
	}
}

// Bad arguments are refused with oc's words (test/ocdiff holds them to the real oc's),
// exit 1; a missing namespace or secret is one line naming it.
func TestCLIRefusesBadArguments(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	cli := newCLI(t)
	ns := createNamespace(t, ctx, "cli-bad")
	waitForServiceAccount(t, ctx, ns, "default")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"policy", "add-role-to-user"}, "error: you must specify a role\n"},
		{[]string{"policy", "add-role-to-user", "system:image-puller"}, "error: you must specify at least one user or service account"},
		{[]string{"secrets", "link", "default"}, "error: must have service account name and at least one secret name"},
		{[]string{"secrets", "link", "default", "s", "--for=push", "-n", ns}, `error: unknown for: push`},
		{[]string{"policy", "add-role-to-user", "admin", "bob", "-n", "no-such-namespace"}, `Error from server (NotFound): namespaces "no-such-namespace" not found`},
		{[]string{"secrets", "link", "default", "no-such-secret", "--for=pull", "-n", ns}, "secret \"no-such-secret\" not found\nerror: No valid secrets found\n"},
	} {
		res := cli.run(ctx, tc.args...)
		if res.ExitCode != 1 || !strings.Contains(res.Stderr, tc.says) {
			t.Errorf("pullgate %s: exit %d, stderr %q; want exit 1 saying %q", strings.Join(tc.args, " "), res.ExitCode, res.Stderr, tc.says)
		}
	}
}

func bindingVersions(t *testing.T, ctx context.Context, ns string) string {
	t.Helper()
	list, err := env.Admin.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range list.Items {
		out = append(out, b.Name+"@"+b.ResourceVersion)
	}
	return strings.Join(out, " ")
}

func itoa(n int) string { return strconv.Itoa(n) }

// registry info and registry login: a service account's credential written into a
// Docker config.json that crane then pulls with; adm create-kubeconfig makes a real
// user that whoami reports.
func TestRegistryLoginAndUsers(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	cli := newCLI(t)
	ns := createNamespace(t, ctx, "login")
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest := pushImage(t, ctx, dockerConfigFor(t, ctx, ns, "pusher", "admin"), image)
	port := itoa(env.RegistryPort)
	cli.ok(ctx, "URL:       http://localhost:"+port+"\nHostnames: localhost:"+port+", 127.0.0.1:"+port+"\n", "registry", "info")

	dockerDir := t.TempDir()
	res, err := harness.Run(ctx, harness.RunOptions{Env: []string{"KUBECONFIG=" + cli.kubeconfig, "DOCKER_CONFIG=" + dockerDir}},
		"registry", "login", "-z", "default", "-n", ns)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("registry login: %v %d %s", err, res.ExitCode, res.Stderr)
	}
	if want := "Saved credentials of system:serviceaccount:" + ns + ":default for localhost:" + port + ", 127.0.0.1:" + port + " into " + filepath.Join(dockerDir, "config.json") + "\n"; res.Stdout != want {
		t.Errorf("registry login printed %q, want %q", res.Stdout, want)
	}
	waitForPull(t, ctx, dockerDir, image, digest)

	kc := filepath.Join(t.TempDir(), "alice.kubeconfig")
	cli.ok(ctx, "kubeconfig for user \"alice\" written to "+kc+"\n", "adm", "create-kubeconfig", "--user", "alice", "--group", "developers", "--output", kc, "--data-dir", env.DataDir)
	res, err = harness.Run(ctx, harness.RunOptions{}, "whoami", "--kubeconfig", kc)
	if err != nil || res.Stdout != "alice\n" {
		t.Errorf("whoami with alice's kubeconfig: %q %q %v", res.Stdout, res.Stderr, err)
	}
}
