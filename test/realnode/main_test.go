// Package realnode runs the seed on a real node: `pullgate up --node kubelet` (Debian's
// containerd and runc, the kubelet and kube-proxy of the embedded Kubernetes release,
// a CNI bridge), beside `pullgate up` with its node agent, and holds them to the same
// verdict for every scenario. It needs root (containerd and the kubelet change
// cgroups, mounts, iptables and sysctls); as any other user every test skips with that
// reason. After both stop, the host must be as it was before they started.
package realnode

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

var (
	// kubeletEnv runs pods on a real kubelet and containerd, agentEnv on the node agent.
	kubeletEnv, agentEnv *harness.Env
	// skipReason is why this machine cannot run a real node, if it cannot.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		skipReason = "the real kubelet and containerd need root (they change cgroups, mounts, iptables and sysctls); run make test as root"
		return m.Run()
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: containerd is not installed: make tools installs it as root (apt-get install -y containerd runc containernetworking-plugins)")
		return 1
	}
	before, err := snapshotHost()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode: reading the host:", err)
		return 1
	}
	code := runBoth(m)
	after, err := snapshotHost()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode: reading the host:", err)
		return 1
	}
	if diff := before.diff(after); diff != "" {
		fmt.Fprintf(os.Stderr, "realnode: the host is not as it was before pullgate up --node kubelet started:\n%s", diff)
		return 1
	}
	return code
}

func runBoth(m *testing.M) int {
	var err error
	if kubeletEnv, err = harness.Start(harness.Options{ExtraArgs: []string{"--node", "kubelet"}}); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: pullgate up --node kubelet:", err)
		return 1
	}
	defer stop(kubeletEnv)
	if agentEnv, err = harness.Start(harness.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: pullgate up:", err)
		return 1
	}
	defer stop(agentEnv)
	return m.Run()
}

func stop(e *harness.Env) {
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "realnode: pullgate did not stop cleanly: %v\n%s\n", err, e.LogTail(40))
	}
	os.RemoveAll(e.DataDir)
}

// needRealNode skips the test, saying why, where a real node cannot run.
func needRealNode(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}
