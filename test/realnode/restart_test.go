package realnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/platform/controlplane"
)

// A SIGKILLed `up --node kubelet` cannot put the host back: its containers outlive
// it (their shims are not its children). The next start does it first, then pods run
// again. (TestMain checks that the host is as before once everything stopped.)
func TestKilledNodeIsPutBackAtTheNextStart(t *testing.T) {
	needRealNode(t)
	ctx := harness.Context(t, 4*time.Minute)
	e := kubeletEnv
	ns := newProject(t, ctx, e, "killed")
	image := pushApp(t, ctx, e, ns)
	runPod(t, ctx, e, ns, "before", image)
	if _, err := e.Kubectl(ctx, "-n", ns, "wait", "--for=condition=Ready", "pod/before", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	pod, err := e.Admin.CoreV1().Pods(ns).Get(ctx, "before", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app := podProcess(t, pod.UID)

	if err := e.Kill(); err != nil {
		t.Fatal(err)
	}
	if !alive(app) {
		t.Fatalf("the pod's process %d died with up: nothing was left to put back", app)
	}
	if err := e.Restart("--node", "kubelet"); err != nil {
		t.Fatal(err)
	}
	if alive(app) {
		t.Errorf("the pod's process %d left by the killed up still runs after the next start", app)
	}
	if !strings.Contains(e.LogTail(400), "putting back what a node left") {
		t.Errorf("the next start does not say it put back what the killed node left:\n%s", e.LogTail(40))
	}
	runPod(t, ctx, e, ns, "after", image)
	if _, err := e.Kubectl(ctx, "-n", ns, "wait", "--for=condition=Ready", "pod/after", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
}

// podProcess is the PID of the one process in the pod's containers (not its pause),
// found through the pod's cgroup.
func podProcess(t *testing.T, uid types.UID) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		cgroup, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(cgroup), "pod"+string(uid)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == "app" {
			return pid
		}
	}
	t.Fatalf("no process of pod %s runs /app", uid)
	return 0
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// The API server's identity towards kubelets (for logs and exec) may do what
// system:kubelet-api-admin allows on nodes, and nothing else: impersonated, it cannot
// read secrets, run pods, exec through the API server, bind roles or impersonate.
func TestAPIServerKubeletClientCannotEscalate(t *testing.T) {
	needRealNode(t)
	ctx := harness.Context(t, time.Minute)
	cfg := rest.CopyConfig(kubeletEnv.AdminConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: controlplane.KubeletClientUser}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	can := func(attrs authorizationv1.ResourceAttributes) bool {
		review, err := as.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return review.Status.Allowed
	}
	for _, a := range []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "nodes", Subresource: "proxy"},
		{Verb: "create", Resource: "nodes", Subresource: "proxy"},
		{Verb: "get", Resource: "nodes", Subresource: "log"},
	} {
		if !can(a) {
			t.Errorf("%s %s/%s is refused: logs and exec would fail", a.Verb, a.Resource, a.Subresource)
		}
	}
	for _, a := range []authorizationv1.ResourceAttributes{
		{Verb: "get", Resource: "secrets", Namespace: "pullgate-system"},
		{Verb: "list", Resource: "secrets"},
		{Verb: "create", Resource: "pods", Namespace: "default"},
		{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "default"},
		{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: "default"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
		{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "cluster-admin"},
		{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "impersonate", Resource: "users"},
		{Verb: "update", Resource: "nodes", Subresource: "status"},
		{Verb: "create", Group: "certificates.k8s.io", Resource: "certificatesigningrequests"},
	} {
		if can(a) {
			t.Errorf("%s may %s %s/%s (%s)", controlplane.KubeletClientUser, a.Verb, a.Resource, a.Subresource, a.Namespace)
		}
	}
	// And the real thing, not only the review: it cannot read the registry's keys.
	if _, err := as.CoreV1().Secrets("pullgate-system").List(ctx, metav1.ListOptions{}); err == nil {
		t.Errorf("%s lists the secrets of pullgate-system", controlplane.KubeletClientUser)
	}
}
