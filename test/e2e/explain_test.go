package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// explainCase is one run of `pullgate explain pull`, kept for the README's gallery.
type explainCase struct {
	title, command, output string
}

// gallery collects the outputs; PULLGATE_EXPLAIN_GALLERY=README.md (make gallery)
// writes them into that file's troubleshooting section, between its markers.
type gallery struct {
	t     *testing.T
	cases []explainCase
	// replace turns this run's names (random namespaces, ports) into the README's.
	replace []string
}

func (g *gallery) add(title, command, output string) {
	// Explain reads the node as the pod saw it (the node agent lists an image in the
	// node's status before it tells a pod about it).
	if strings.Contains(output, "is on this node, but") && !strings.Contains(output, "on the node: yes") {
		g.t.Errorf("%s: the pod's message says its image is on the node, explain pull says not:\n%s", title, output)
	}
	g.cases = append(g.cases, explainCase{title, command, output})
}

var tookRE = regexp.MustCompile(`\(\d+(\.\d+)?(ms|s|µs)\)`)

const galleryStart, galleryEnd = "<!-- explain gallery: make gallery writes it -->\n", "<!-- end of the explain gallery -->\n"

func (g *gallery) write() {
	file := os.Getenv("PULLGATE_EXPLAIN_GALLERY")
	if file == "" || g.t.Failed() {
		return
	}
	r := strings.NewReplacer(g.replace...)
	var b strings.Builder
	for _, c := range g.cases {
		fmt.Fprintf(&b, "**%s**\n\n```console\n$ %s\n%s```\n\n", c.title, r.Replace(c.command), tookRE.ReplaceAllString(r.Replace(c.output), "(…ms)"))
	}
	readme, err := os.ReadFile(file)
	if err != nil {
		g.t.Fatal(err)
	}
	before, rest, ok := strings.Cut(string(readme), galleryStart)
	_, after, ok2 := strings.Cut(rest, galleryEnd)
	if !ok || !ok2 {
		g.t.Fatalf("%s has no explain gallery markers", file)
	}
	if err := os.WriteFile(file, []byte(before+galleryStart+b.String()+galleryEnd+after), 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// explainRun runs `pullgate explain pull args…` and returns its output and exit code.
func (c *cliEnv) explain(ctx context.Context, args ...string) (string, int) {
	c.t.Helper()
	res := c.run(ctx, append([]string{"explain", "pull", "--ca-file", filepath.Join(env.DataDir, "pki", pki.CAFile)}, args...)...)
	if res.ExitCode > 2 {
		c.t.Fatalf("explain pull %v: exit %d: %s", args, res.ExitCode, res.Stderr)
	}
	return res.Stdout, res.ExitCode
}

// runFix runs a printed fix command with a shell, with pullgate and kubectl on PATH.
func (c *cliEnv) runFix(ctx context.Context, fix string) {
	c.t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		c.t.Fatal(err)
	}
	kubectl, err := harness.KubectlBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	dir := c.t.TempDir()
	for _, b := range []string{bin, kubectl} {
		if err := os.Symlink(b, filepath.Join(dir, filepath.Base(b))); err != nil {
			c.t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", fix)
	cmd.Dir = c.t.TempDir()
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "KUBECONFIG="+c.kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("the printed fix failed: %v\n$ %s\n%s", err, fix, out)
	}
}

// fixOf is the verdict's fix line of an explain output.
func fixOf(t *testing.T, out string) string {
	t.Helper()
	_, after, ok := strings.Cut(out, "verdict: would not pull")
	if !ok {
		t.Fatalf("no failing verdict:\n%s", out)
	}
	_, fix, ok := strings.Cut(after, "fix: ")
	if !ok {
		t.Fatalf("the verdict has no fix:\n%s", out)
	}
	fix, _, _ = strings.Cut(fix, "\n")
	return fix
}

// Every way the seed lists to end in ImagePullBackOff, built for real: explain pull
// names the cause and prints a fix; running that fix makes the verdict a pull.
func TestExplainPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cli := newCLI(t)
	g := &gallery{t: t}
	defer g.write()

	wantExit := func(out string, got, want int) {
		t.Helper()
		if got != want {
			t.Fatalf("exit %d, want %d:\n%s", got, want, out)
		}
	}

	t.Run("another project's image: the missing role, then the binding that grants it", func(t *testing.T) {
		a, b := createNamespace(t, ctx, "explain-a"), createNamespace(t, ctx, "explain-b")
		waitForServiceAccount(t, ctx, a, "default")
		registryPort := env.RegistryHost[strings.LastIndex(env.RegistryHost, ":")+1:]
		g.replace = append(g.replace, a, "project-a", b, "project-b", env.RegistryHost, "localhost:5000", "127.0.0.1:"+registryPort, "127.0.0.1:5000", ", port "+registryPort, ", port 5000")
		image := env.RegistryHost + "/" + b + "/app:v1"
		pushImage(t, ctx, dockerConfigFor(t, ctx, b, "pusher", "admin"), image)
		pod := createPod(t, ctx, a, "app", image)
		w := waitForWaiting(t, ctx, a, pod, "ImagePullBackOff", 30*time.Second)
		if !strings.HasSuffix(w.Message, "run: pullgate explain pull -n "+a+" "+pod) {
			t.Errorf("the back-off message does not end with the command to run:\n%s", w.Message)
		}
		out, code := cli.explain(ctx, "-n", a, pod)
		g.add("Another project's image: the role the pod's service account lacks", "pullgate explain pull -n "+a+" "+pod, out)
		wantExit(out, code, 1)
		fix := fixOf(t, out)
		if want := "pullgate policy add-role-to-user system:image-puller system:serviceaccount:" + a + ":default -n " + b; fix != want {
			t.Fatalf("fix %q, want %q", fix, want)
		}
		// Before any pod exists, for the service account.
		out, code = cli.explain(ctx, image, "--serviceaccount", a+"/default")
		wantExit(out, code, 1)
		cli.runFix(ctx, fix)
		out, code = cli.explain(ctx, "-n", a, pod)
		g.add("The same pod once the fix is run: the binding, role and subject that let it pull", "pullgate explain pull -n "+a+" "+pod, out)
		wantExit(out, code, 0)
		for _, want := range []string{"may pull " + b + "/app: rolebinding " + b + "/system:image-puller", "token of service account " + a + "/default", "manifest found"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain does not say %q:\n%s", want, out)
			}
		}
		waitForCondition(t, ctx, a, pod, corev1.ConditionTrue, time.Minute)
	})

	// The seed's secured registries (TestSeedSecuredRegistries uses them too).
	regs := startSeedRegistries(t, ctx)
	private, delegating, sso, port := regs.Private, regs.Delegating, regs.SSO, regs.PrivatePort
	g.replace = append(g.replace, private, "privateregistry.example.com", fmt.Sprintf(", port %d", port), "",
		sso, "sso.example.com", delegating, "delegating.example.com", fmt.Sprintf(", port %d", regs.DelegatingPort), "")
	developerJSON := filepath.Join(basicDockerConfig(t, map[string][2]string{private: {"developer", "dev-pass"}}), "config.json")

	t.Run("an Opaque secret: the kubelet ignores it; recreated with its type", func(t *testing.T) {
		ns := createNamespace(t, ctx, "explain-opaque")
		waitForServiceAccount(t, ctx, ns, "default")
		g.replace = append(g.replace, ns, "project-a")
		cli.ok(ctx, "secret/pull created\n", "create", "secret", "generic", "pull", "--from-file=.dockerconfigjson="+developerJSON, "-n", ns)
		pod := newPod(ns, "app", private+"/other/app:v1")
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "pull"}}
		if _, err := env.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, code := cli.explain(ctx, "-n", ns, "app")
		g.add("A secret of type Opaque", "pullgate explain pull -n "+ns+" app", out)
		wantExit(out, code, 1)
		if !strings.Contains(out, "type Opaque") {
			t.Errorf("explain does not name the secret's type:\n%s", out)
		}
		cli.runFix(ctx, fixOf(t, out))
		out, code = cli.explain(ctx, "-n", ns, "app")
		wantExit(out, code, 0)
		waitForCondition(t, ctx, ns, "app", corev1.ConditionTrue, time.Minute)
	})

	t.Run("linked after the pod was created: recreate the pod", func(t *testing.T) {
		ns := createNamespace(t, ctx, "explain-race")
		waitForServiceAccount(t, ctx, ns, "default")
		g.replace = append(g.replace, ns, "project-a")
		cli.ok(ctx, "secret/pull created\n", "create", "secret", "docker-registry", "pull", "--docker-server="+private,
			"--docker-username=developer", "--docker-password=dev-pass", "--docker-email=unused", "-n", ns)
		pod := createPod(t, ctx, ns, "app", private+"/other/app:v1")
		cli.ok(ctx, "", "secrets", "link", "default", "pull", "--for=pull", "-n", ns)
		out, code := cli.explain(ctx, "-n", ns, pod)
		g.add("The seed's race: the pod was created before its service account had the pull secret", "pullgate explain pull -n "+ns+" "+pod, out)
		wantExit(out, code, 1)
		fix := fixOf(t, out)
		if !strings.Contains(out, "the pod was created before default had it") || !strings.Contains(fix, "kubectl replace --force") {
			t.Fatalf("explain does not name the race and its fix:\n%s", out)
		}
		cli.runFix(ctx, fix)
		out, code = cli.explain(ctx, "-n", ns, pod)
		wantExit(out, code, 0)
		waitForCondition(t, ctx, ns, pod, corev1.ConditionTrue, time.Minute)
	})

	t.Run("a secret never linked for pull", func(t *testing.T) {
		ns := createNamespace(t, ctx, "explain-unlinked")
		waitForServiceAccount(t, ctx, ns, "default")
		g.replace = append(g.replace, ns, "project-a")
		cli.ok(ctx, "secret/pull created\n", "create", "secret", "docker-registry", "pull", "--docker-server="+private,
			"--docker-username=developer", "--docker-password=dev-pass", "--docker-email=unused", "-n", ns)
		pod := createPod(t, ctx, ns, "app", private+"/other/app:v1")
		out, code := cli.explain(ctx, "-n", ns, pod)
		g.add("A pull secret that is not linked to the service account", "pullgate explain pull -n "+ns+" "+pod, out)
		wantExit(out, code, 1)
		fix := fixOf(t, out)
		if !strings.HasPrefix(fix, "pullgate secrets link default pull --for=pull -n "+ns) {
			t.Fatalf("fix %q", fix)
		}
		cli.runFix(ctx, fix)
		out, code = cli.explain(ctx, "-n", ns, pod)
		wantExit(out, code, 0)
	})

	t.Run("the more specific key wins", func(t *testing.T) {
		ns := createNamespace(t, ctx, "explain-keys")
		waitForServiceAccount(t, ctx, ns, "default")
		g.replace = append(g.replace, ns, "project-a")
		both := filepath.Join(basicDockerConfig(t, map[string][2]string{private: {"developer", "dev-pass"}, private + "/repository-main": {"main-user", "main-pass"}}), "config.json")
		cli.ok(ctx, "secret/pull created\n", "create", "secret", "generic", "pull", "--from-file=.dockerconfigjson="+both, "--type=kubernetes.io/dockerconfigjson", "-n", ns)
		out, code := cli.explain(ctx, private+"/repository-main/app:v1", "--secret", ns+"/pull", "--probe=true")
		g.add("Two keys for one registry: the more specific one is tried first", "pullgate explain pull "+private+"/repository-main/app:v1 --secret "+ns+"/pull --probe=true", out)
		wantExit(out, code, 0)
		first, second := strings.Index(out, `#1 pod secrets: secret `+ns+`/pull (key .dockerconfigjson) key "`+private+`/repository-main"`), strings.Index(out, `#2 pod secrets: secret `+ns+`/pull (key .dockerconfigjson) key "`+private+`"`)
		if first < 0 || second < first || !strings.Contains(out, `verdict: would pull, with secret `+ns+`/pull (key .dockerconfigjson), user "main-user"`) {
			t.Errorf("explain does not try repository-main's key first and pull with it:\n%s", out)
		}
		// The same file on its own.
		out, code = cli.explain(ctx, private+"/other/app:v1", "--config", both)
		wantExit(out, code, 0)
		if !strings.Contains(out, `path "/repository-main" is not a prefix of "/other/app"`) {
			t.Errorf("explain does not say why repository-main's key does not match other/app:\n%s", out)
		}
	})

	t.Run("delegated authentication needs secrets for both endpoints", func(t *testing.T) {
		ns := createNamespace(t, ctx, "explain-delegated")
		waitForServiceAccount(t, ctx, ns, "default")
		g.replace = append(g.replace, ns, "project-a")
		cli.ok(ctx, "", "create", "secret", "docker-registry", "--docker-server="+sso, "--docker-username=developer@example.com",
			"--docker-password=sso-pass", "--docker-email=unused", "redhat-connect-sso", "-n", ns)
		cli.ok(ctx, "", "secrets", "link", "default", "redhat-connect-sso", "--for=pull", "-n", ns)
		pod := createPod(t, ctx, ns, "app", delegating+"/team/app:v1")
		out, code := cli.explain(ctx, "-n", ns, pod)
		g.add("Delegated authentication with a secret for the token service only", "pullgate explain pull -n "+ns+" "+pod, out)
		wantExit(out, code, 1)
		if !strings.Contains(out, "pull secrets must be defined for both the authentication and registry endpoints") || !strings.Contains(out, "tokens from "+sso) {
			t.Fatalf("explain does not say both endpoints need a secret:\n%s", out)
		}
		// The printed fix, with the user's values in place of its blanks.
		fix := strings.NewReplacer("NAME", "private-registry", "--docker-username=…", "--docker-username=developer@example.com",
			"--docker-password=…", "--docker-password=not-the-sso-password").Replace(fixOf(t, out))
		cli.runFix(ctx, fix)
		out, code = cli.explain(ctx, "-n", ns, pod)
		g.add("The same pod with a secret for each endpoint", "pullgate explain pull -n "+ns+" "+pod, out)
		wantExit(out, code, 0)
		if !strings.Contains(out, "token issued, manifest found") {
			t.Errorf("the probe does not show the token and the manifest:\n%s", out)
		}
	})

	t.Run("the cluster pull secret covers some registries only", func(t *testing.T) {
		cli.ok(ctx, "", "adm", "set-pull-secret", developerJSON)
		t.Cleanup(func() {
			empty := filepath.Join(t.TempDir(), "empty.json")
			_ = os.WriteFile(empty, []byte(`{"auths": {}}`), 0o600)
			cli.run(context.Background(), "adm", "set-pull-secret", empty)
		})
		ns := createNamespace(t, ctx, "explain-cluster")
		waitForServiceAccount(t, ctx, ns, "default")
		g.replace = append(g.replace, ns, "project-a")
		pod := createPod(t, ctx, ns, "covered", private+"/other/app:v1")
		out, code := cli.explain(ctx, "-n", ns, pod)
		wantExit(out, code, 0)
		if !strings.Contains(out, "#1 node: cluster pull secret") {
			t.Errorf("explain does not pull with the cluster pull secret:\n%s", out)
		}
		pod = createPod(t, ctx, ns, "uncovered", delegating+"/team/app:v1")
		out, code = cli.explain(ctx, "-n", ns, pod)
		g.add("The cluster pull secret has no entry for this registry", "pullgate explain pull -n "+ns+" "+pod, out)
		wantExit(out, code, 1)
		if !strings.Contains(out, "-- node: cluster pull secret") || !strings.Contains(out, "is not \"delegating.example.com\"") {
			t.Errorf("explain does not show the cluster pull secret's entry not matching:\n%s", out)
		}
	})

	t.Run("usage errors exit 2 and JSON is the documented schema", func(t *testing.T) {
		if _, code := cli.explain(ctx); code != 2 {
			t.Errorf("no argument: exit %d, want 2", code)
		}
		if _, code := cli.explain(ctx, "x", "--serviceaccount", "no-slash"); code != 2 {
			t.Errorf("--serviceaccount no-slash: exit %d, want 2", code)
		}
		out, code := cli.explain(ctx, private+"/other/app:v1", "--config", developerJSON, "-o", "json")
		wantExit(out, code, 0)
		if !strings.Contains(out, `"wouldPull": true`) || !strings.Contains(out, `"normalizedKey": "`+private+`"`) || strings.Contains(out, "dev-pass") {
			t.Errorf("JSON:\n%s", out)
		}
	})
}
