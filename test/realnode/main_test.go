// Package realnode runs the seed on a real node: `pullgate up --node kubelet` (Debian's
// containerd and runc, the kubelet and kube-proxy of the embedded Kubernetes release,
// a CNI bridge), beside `pullgate up` with its node agent, and holds them to the same
// verdict for every scenario. It needs root (containerd and the kubelet change
// cgroups, mounts, iptables and sysctls); as any other user every test skips with that
// reason. After both stop, the host must be as it was before they started.
package realnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/node/kubelet"
	"pullgate.dev/pullgate/internal/platform/controlplane"
)

var (
	// kubeletEnv runs pods on a real kubelet and containerd, agentEnv on the node agent.
	kubeletEnv, agentEnv *harness.Env
	// seed are the seed's external registries, which both nodes trust and reach by
	// name through the name proxy; both clusters' pull secret holds node-user's
	// credential for the private one.
	seed *harness.SeedRegistries
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
	if appDir != "" {
		os.RemoveAll(appDir)
	}
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
	// privateregistry.example.com and the others reach this machine through the name
	// proxy, for containerd (HTTPS_PROXY; loopback is never proxied), the node agent
	// and crane alike.
	proxy, err := harness.StartNameProxy("example.com")
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode: name proxy:", err)
		return 1
	}
	defer proxy.Close()
	ip, err := kubelet.HostIP()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	for _, kv := range proxy.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, "NO_PROXY") {
			// The API server listens on the node's address; Services and pods.
			v = strings.Join([]string{ip.String(), controlplane.ServiceCIDR, kubelet.PodCIDR}, ",")
		}
		os.Setenv(k, v)
	}
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
	if seed, err = harness.StartSeedRegistries(filepath.Join(agentEnv.DataDir, "pki")); err != nil {
		fmt.Fprintln(os.Stderr, "realnode: the seed's registries:", err)
		return 1
	}
	defer seed.Stop()
	if err := setUpSeedRegistries(); err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		return 1
	}
	return m.Run()
}

// setUpSeedRegistries makes the real node trust the seed registries' CA (the agent
// trusts it already: it is its up's), and sets the cluster pull secret of both
// clusters to node-user's credential for the private registry, before any pull: the
// kubelet reads its node-level config.json at most every 5 minutes.
func setUpSeedRegistries() error {
	for _, host := range []string{seed.Private, seed.Delegating, seed.SSO} {
		if err := kubelet.TrustRegistry(filepath.Join(kubeletEnv.DataDir, "nodes", "local"), host, seed.CAFile); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "realnode-cluster-secret-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := harness.BasicDockerConfig(dir, map[string][2]string{seed.Private: {"node-user", harness.PrivateUsers["node-user"]}})
	if err != nil {
		return err
	}
	for _, e := range []*harness.Env{kubeletEnv, agentEnv} {
		if out, err := exec.Command(e.Bin, "adm", "set-pull-secret", filepath.Join(cfg, "config.json"), "--kubeconfig", e.Kubeconfig).CombinedOutput(); err != nil {
			return fmt.Errorf("pullgate adm set-pull-secret: %v: %s", err, out)
		}
	}
	nodeConfig := filepath.Join(kubeletEnv.DataDir, "nodes", "local", "kubelet-root", "config.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		data, err := os.ReadFile(nodeConfig)
		return err == nil && strings.Contains(string(data), seed.Private), nil
	})
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
