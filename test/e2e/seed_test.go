package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// The second half of the seed, end to end, with real processes and host names:
// privateregistry.example.com (a standalone registry with htpasswd users) and a second
// one that delegates authentication to sso.example.com (a separate token server),
// reached through the harness's name proxy (TestMain).
// (The first half, cross-project pulls, is TestSeedCrossProjectCommands.)
func TestSeedSecuredRegistries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cli := newCLI(t)
	// 2. A private registry with Basic auth (developer may pull everything), and 4.'s
	// registry delegating to sso.example.com.
	regs := startSeedRegistries(t, ctx)
	private, delegating, sso, registryA := regs.Private, regs.Delegating, regs.SSO, regs.PrivateProcess
	certDir := t.TempDir() // for skopeo: the CA that signed the registries' certificate
	copyFile(t, regs.CAFile, filepath.Join(certDir, "ca.crt"))

	dockerJSON := filepath.Join(basicDockerConfig(t, map[string][2]string{private: {"developer", "dev-pass"}}), "config.json")
	authJSON := filepath.Join(t.TempDir(), "auth.json")
	copyFile(t, dockerJSON, authJSON)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"docker", []string{"create", "secret", "generic", "pull", "--from-file=.dockerconfigjson=" + dockerJSON, "--type=kubernetes.io/dockerconfigjson"}},
		{"podman", []string{"create", "secret", "generic", "pull", "--from-file=" + authJSON, "--type=kubernetes.io/podmanconfigjson"}},
		{"flags", []string{"create", "secret", "docker-registry", "pull", "--docker-server=" + private, "--docker-username=developer", "--docker-password=dev-pass", "--docker-email=unused"}},
	} {
		ns := createNamespace(t, ctx, "private-"+tc.name)
		waitForServiceAccount(t, ctx, ns, "default")
		cli.ok(ctx, "secret/pull created\n", append(tc.args, "-n", ns)...)
		cli.ok(ctx, "", "secrets", "link", "default", "pull", "--for=pull", "-n", ns)
		waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "app", private+"/other/app:v1"), corev1.ConditionTrue, 30*time.Second)
	}

	// 3. One file, two users: the repository-main entry pulls repository-main/…,
	// the registry's entry everything else; the registry's log says who pulled what.
	both := filepath.Join(basicDockerConfig(t, map[string][2]string{private: {"developer", "dev-pass"}, private + "/repository-main": {"main-user", "main-pass"}}), "config.json")
	ns := createNamespace(t, ctx, "two-users")
	waitForServiceAccount(t, ctx, ns, "default")
	cli.ok(ctx, "secret/pull created\n", "create", "secret", "generic", "pull", "--from-file=.dockerconfigjson="+both, "--type=kubernetes.io/dockerconfigjson", "-n", ns)
	cli.ok(ctx, "", "secrets", "link", "default", "pull", "--for=pull", "-n", ns)
	waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "main", private+"/repository-main/app:v1"), corev1.ConditionTrue, 30*time.Second)
	waitForCondition(t, ctx, ns, createPod(t, ctx, ns, "other", private+"/other/app:v1"), corev1.ConditionTrue, 30*time.Second)
	log := registryA.Output()
	for _, want := range []string{"path=/v2/repository-main/app/manifests/v1 status=200 user=main-user", "path=/v2/other/app/manifests/v1 status=200 user=developer"} {
		if !strings.Contains(log, want) {
			t.Errorf("the registry's log does not show %q:\n%s", want, lastLines(log, 20))
		}
	}

	// 4. Delegated authentication: a registry whose tokens come from sso.example.com.
	ns = createNamespace(t, ctx, "delegated")
	waitForServiceAccount(t, ctx, ns, "default")
	cli.ok(ctx, "secret/redhat-connect-sso created\n", "create", "secret", "docker-registry",
		"--docker-server="+sso, "--docker-username=developer@example.com", "--docker-password=sso-pass", "--docker-email=unused",
		"redhat-connect-sso", "-n", ns)
	cli.ok(ctx, "secret/private-registry created\n", "create", "secret", "docker-registry",
		"--docker-server="+delegating, "--docker-username=developer@example.com", "--docker-password=not-the-sso-password", "--docker-email=unused",
		"private-registry", "-n", ns)
	cli.ok(ctx, "", "secrets", "link", "default", "redhat-connect-sso", "private-registry", "--for=pull", "-n", ns)
	pod := createPod(t, ctx, ns, "app", delegating+"/team/app:v1")
	waitForCondition(t, ctx, ns, pod, corev1.ConditionTrue, 30*time.Second)
	if ev := waitForEvent(t, ctx, ns, pod, "Pulled"); !strings.Contains(ev, "redhat-connect-sso") || !strings.Contains(ev, "token from "+sso) {
		t.Errorf("Pulled event %q does not say the token host's credential was used", ev)
	}

	// A wrong sso credential: the refusal names the token host.
	ns = createNamespace(t, ctx, "delegated-wrong")
	waitForServiceAccount(t, ctx, ns, "default")
	cli.ok(ctx, "", "create", "secret", "docker-registry", "--docker-server="+sso, "--docker-username=developer@example.com",
		"--docker-password=wrong", "--docker-email=unused", "redhat-connect-sso", "-n", ns)
	cli.ok(ctx, "", "create", "secret", "docker-registry", "--docker-server="+delegating, "--docker-username=developer@example.com",
		"--docker-password=not-the-sso-password", "--docker-email=unused", "private-registry", "-n", ns)
	cli.ok(ctx, "", "secrets", "link", "default", "redhat-connect-sso", "private-registry", "--for=pull", "-n", ns)
	w := waitForWaiting(t, ctx, ns, createPod(t, ctx, ns, "app", delegating+"/team/app:v1"), "ImagePullBackOff", 30*time.Second)
	if !strings.Contains(w.Message, "token service "+sso) {
		t.Errorf("back-off message does not name the token host %s:\n%s", sso, w.Message)
	}

	// The sso credential alone: "pull secrets must be defined for both the
	// authentication and registry endpoints", and the pod is told so.
	ns = createNamespace(t, ctx, "delegated-sso-only")
	waitForServiceAccount(t, ctx, ns, "default")
	cli.ok(ctx, "", "create", "secret", "docker-registry", "--docker-server="+sso, "--docker-username=developer@example.com",
		"--docker-password=sso-pass", "--docker-email=unused", "redhat-connect-sso", "-n", ns)
	cli.ok(ctx, "", "secrets", "link", "default", "redhat-connect-sso", "--for=pull", "-n", ns)
	w = waitForWaiting(t, ctx, ns, createPod(t, ctx, ns, "app", delegating+"/team/app:v1"), "ImagePullBackOff", 30*time.Second)
	if !strings.Contains(w.Message, "needs pull secrets for both the authentication and registry endpoints") {
		t.Errorf("back-off message does not say both endpoints need a secret:\n%s", w.Message)
	}

	// 5. The cluster pull secret alone: a pod with no secret of its own pulls.
	cli.ok(ctx, "secret/pull-secret updated in namespace pullgate-system\n", "adm", "set-pull-secret", dockerJSON)
	t.Cleanup(func() {
		empty := filepath.Join(t.TempDir(), "empty.json")
		_ = os.WriteFile(empty, []byte(`{"auths": {}}`), 0o600)
		cli.run(context.Background(), "adm", "set-pull-secret", empty)
	})
	ns = createNamespace(t, ctx, "cluster-secret")
	waitForServiceAccount(t, ctx, ns, "default")
	pod = createPod(t, ctx, ns, "app", private+"/repository-main/app:v1")
	waitForCondition(t, ctx, ns, pod, corev1.ConditionTrue, 30*time.Second)
	if ev := waitForEvent(t, ctx, ns, pod, "Pulled"); !strings.Contains(ev, "cluster pull secret") {
		t.Errorf("Pulled event %q does not say the cluster pull secret was used", ev)
	}

	// 6. skopeo reads the same auth.json the Podman secret was made from.
	skopeo := requireCommand(t, "skopeo")
	out, err := exec.CommandContext(ctx, skopeo, "inspect", "--authfile", authJSON, "--cert-dir", certDir, "docker://"+private+"/other/app:v1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"Digest"`) {
		t.Errorf("skopeo with the auth.json: %v\n%s", err, out)
	}
}

func writeHtpasswd(t *testing.T, file string, users map[string]string) {
	t.Helper()
	if err := harness.WriteHtpasswd(file, users); err != nil {
		t.Fatal(err)
	}
}

// basicDockerConfig writes a DOCKER_CONFIG directory with key → (user, password).
func basicDockerConfig(t *testing.T, entries map[string][2]string) string {
	t.Helper()
	dir, err := harness.BasicDockerConfig(t.TempDir(), entries)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func startProcess(t *testing.T, ready string, args ...string) *harness.Process {
	t.Helper()
	p, err := harness.StartProcess(ready, args...)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(p.Stop) })
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
