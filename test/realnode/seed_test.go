package realnode

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// scenario is one of the seed's pulls, run the same way on both nodes; it returns the
// outcome of the pod it checks.
type scenario struct {
	name string
	want string
	// kubelet, when set, is the real kubelet's outcome where it differs from the
	// node agent's (want), as the README's node differences say.
	kubelet string
	run     func(t *testing.T, ctx context.Context, e *harness.Env) string
}

func grant(t *testing.T, ctx context.Context, e *harness.Env, ns string, subject rbacv1.Subject) string {
	t.Helper()
	b, err := e.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "pullers-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:image-puller"},
		Subjects:   []rbacv1.Subject{subject},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b.Name
}

func saSubject(ns string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: ns}
}

var scenarios = []scenario{
	{"OwnProjectWithTheServiceAccountsPullSecret", pulled, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		ns := newProject(t, ctx, e, "own")
		got, _ := outcome(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", pushApp(t, ctx, e, ns)))
		return got
	}},
	{"OtherProjectWithoutAGrant", refused, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		a, b := newProject(t, ctx, e, "a"), newProject(t, ctx, e, "b")
		got, _ := outcome(t, ctx, e, a, runPod(t, ctx, e, a, "app", pushApp(t, ctx, e, b)))
		return got
	}},
	{"OtherProjectGrantedToTheServiceAccount", pulled, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		a, b := newProject(t, ctx, e, "a"), newProject(t, ctx, e, "b")
		image := pushApp(t, ctx, e, b)
		grant(t, ctx, e, b, saSubject(a))
		got, _ := outcome(t, ctx, e, a, runPod(t, ctx, e, a, "app", image))
		return got
	}},
	{"OtherProjectGrantedToTheProjectsGroup", pulled, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		a, b := newProject(t, ctx, e, "a"), newProject(t, ctx, e, "b")
		image := pushApp(t, ctx, e, b)
		grant(t, ctx, e, b, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts:" + a})
		got, _ := outcome(t, ctx, e, a, runPod(t, ctx, e, a, "app", image))
		return got
	}},
	// A pod whose only pull secret is for another registry: the service account's are
	// not added, so the integrated registry is reached only through the credential
	// provider plugin, with the pod's service account token.
	{"NoPullSecretForTheRegistryCredentialProvider", pulled, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		ns := newProject(t, ctx, e, "plugin")
		image := pushApp(t, ctx, e, ns)
		data, err := credentials.SetAuth(nil, "other.example.com", credentials.Credential{Username: "u", Password: "p"}, credentials.Docker)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: data},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := outcome(t, ctx, e, ns, runPod(t, ctx, e, ns, "app", image, "elsewhere"))
		return got
	}},
	// The image is on the node, pulled by its own project's pod: a pod of a project
	// that may not pull it does not get the node's copy (the kubelet's "ensure secret
	// pulled images" check; the node agent asks the registry's RBAC).
	{"CachedImageToAnotherProject", refused, "", func(t *testing.T, ctx context.Context, e *harness.Env) string {
		a, b := newProject(t, ctx, e, "a"), newProject(t, ctx, e, "b")
		image := pushApp(t, ctx, e, b)
		if got, msg := outcome(t, ctx, e, b, runPod(t, ctx, e, b, "owner", image)); got != pulled {
			t.Fatalf("the owner's pod was %s: %s", got, msg)
		}
		got, _ := outcome(t, ctx, e, a, runPod(t, ctx, e, a, "app", image))
		return got
	}},
	// The image is on the node (a granted pod pulled it); the grant is revoked. The
	// node agent asks RBAC again and refuses the next pod of that project; the real
	// kubelet lets it use the node's copy, because the pod holds the very pull secret
	// that pulled it (its check is which credentials pulled an image, not whether they
	// are still allowed; imagePullPolicy: Always asks the registry).
	{"CachedImageAfterTheGrantIsRevoked", refused, pulled, func(t *testing.T, ctx context.Context, e *harness.Env) string {
		a, b := newProject(t, ctx, e, "a"), newProject(t, ctx, e, "b")
		image := pushApp(t, ctx, e, b)
		binding := grant(t, ctx, e, b, saSubject(a))
		if got, msg := outcome(t, ctx, e, a, runPod(t, ctx, e, a, "first", image)); got != pulled {
			t.Fatalf("the granted pod was %s: %s", got, msg)
		}
		if err := e.Admin.RbacV1().RoleBindings(b).Delete(ctx, binding, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRevoked(t, ctx, e, b)
		got, _ := outcome(t, ctx, e, a, runPod(t, ctx, e, a, "second", image))
		return got
	}},
}

// waitRevoked waits until the registry refuses what the grant allowed (its RBAC
// informers have seen the deletion): anonymous-looking probes would not do, so it
// asks the API server, which the registry's informers follow within moments.
func waitRevoked(t *testing.T, ctx context.Context, e *harness.Env, ns string) {
	t.Helper()
	for {
		list, err := e.Admin.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		left := false
		for _, b := range list.Items {
			left = left || strings.HasPrefix(b.Name, "pullers-")
		}
		if !left {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the grant was not deleted")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Every scenario reaches the same verdict on the real kubelet and on the node agent,
// and the one the seed promises.
func TestSeedOnARealKubeletAndTheNodeAgent(t *testing.T) {
	needRealNode(t)
	for _, s := range append(scenarios, registryScenarios...) {
		t.Run(s.name, func(t *testing.T) {
			ctx := harness.Context(t, 4*time.Minute)
			got := map[string]string{}
			for _, node := range []struct {
				name string
				env  *harness.Env
			}{{"kubelet", kubeletEnv}, {"agent", agentEnv}} {
				t.Run(node.name, func(t *testing.T) { got[node.name] = s.run(t, ctx, node.env) })
			}
			wantKubelet := s.want
			if s.kubelet != "" {
				wantKubelet = s.kubelet
			}
			if got["kubelet"] != wantKubelet || got["agent"] != s.want {
				t.Errorf("real kubelet: %s, node agent: %s; want %s and %s", got["kubelet"], got["agent"], wantKubelet, s.want)
			}
		})
	}
}

// A pod of another project is refused by containerd with only "pull access denied …
// insufficient_scope"; pullgate's controllers record on the pod who was refused,
// which role is missing and the command that grants it. Then the pod runs, its logs
// and exec work through the API server.
func TestRefusalIsExplainedOnThePodThenLogsAndExecWork(t *testing.T) {
	needRealNode(t)
	ctx := harness.Context(t, 4*time.Minute)
	e := kubeletEnv
	a, b := newProject(t, ctx, e, "a"), newProject(t, ctx, e, "b")
	image := pushApp(t, ctx, e, b)
	pod := runPod(t, ctx, e, a, "app", image)
	got, msg := outcome(t, ctx, e, a, pod)
	if got != refused {
		t.Fatalf("pod %s, want refused", got)
	}
	mustContain(t, "containerd's message", msg, "insufficient_scope")
	explained := event(t, ctx, e, a, pod, "PullExplained")
	mustContain(t, "the PullExplained event", explained, "system:serviceaccount:"+a+":default", b+"/app", "system:image-puller",
		"pullgate policy add-role-to-user system:image-puller system:serviceaccount:"+a+":default -n "+b)

	// The fix, as the event says it.
	fix := explained[strings.Index(explained, "pullgate policy"):]
	cmd := exec.CommandContext(ctx, e.Bin, append(strings.Fields(fix), "--kubeconfig", e.Kubeconfig)[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", fix, err, out)
	}
	again := runPod(t, ctx, e, a, "again", image)
	if got, msg := outcome(t, ctx, e, a, again); got != pulled {
		t.Fatalf("after the fix the pod was %s: %s", got, msg)
	}
	if _, err := e.Kubectl(ctx, "-n", a, "wait", "--for=condition=Ready", "pod/"+again, "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	if out, err := e.Kubectl(ctx, "-n", a, "logs", again); err != nil || !strings.Contains(out, "app started") {
		t.Errorf("kubectl logs: %q, %v; want app started", out, err)
	}
	if out, err := e.Kubectl(ctx, "-n", a, "exec", again, "--", "/app", "echo", "hello", "from", "exec"); err != nil || strings.TrimSpace(out) != "hello from exec" {
		t.Errorf("kubectl exec: %q, %v", out, err)
	}
}

// A namespace and a pod in it, applied together, run: the pod waits for nothing a
// user must do (the image is granted to every service account).
func TestPodAppliedWithItsNamespace(t *testing.T) {
	needRealNode(t)
	ctx := harness.Context(t, 4*time.Minute)
	e := kubeletEnv
	shared := newProject(t, ctx, e, "shared")
	image := pushApp(t, ctx, e, shared)
	grant(t, ctx, e, shared, rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts"})
	ns := fmt.Sprintf("applied-%d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() { _ = e.Admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: %s}
spec:
  terminationGracePeriodSeconds: 0
  containers: [{name: app, image: %s}]
`, ns, ns, image)
	kubectl, err := harness.KubectlBinary()
	if err != nil {
		t.Fatal(err)
	}
	apply := exec.CommandContext(ctx, kubectl, "--kubeconfig", e.Kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(manifest)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v: %s", err, out)
	}
	if _, err := e.Kubectl(ctx, "-n", ns, "wait", "--for=condition=Ready", "pod/app", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
}

// `up --node kubelet` as an ordinary user stops at once with one line that says why
// and what to do instead, and starts nothing.
func TestKubeletNodeRefusedToAnOrdinaryUser(t *testing.T) {
	needRealNode(t)
	dir := t.TempDir()
	cmd := exec.Command(kubeletEnv.Bin, "up", "--node", "kubelet", "--data-dir", dir+"/data")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("up --node kubelet as nobody succeeded: %s", out)
	}
	mustContain(t, "the error", string(out), "--node kubelet: must run as root", "--node agent")
}
