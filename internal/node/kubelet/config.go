package kubelet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// Files are where a node keeps what it writes, all under its directory but for the
// run directory of containerd's sockets and state, which must be a short path (a
// unix socket's path is at most 107 bytes).
type Files struct {
	Dir    string
	RunDir string
}

// FilesFor lays out the node kept in dir.
func FilesFor(dir string) Files {
	sum := sha256.Sum256([]byte(dir))
	return Files{Dir: dir, RunDir: "/run/pullgate-node-" + hex.EncodeToString(sum[:4])}
}

func (f Files) ContainerdConfig() string  { return filepath.Join(f.Dir, "containerd", "config.toml") }
func (f Files) ContainerdRoot() string    { return filepath.Join(f.Dir, "containerd", "root") }
func (f Files) ContainerdSocket() string  { return filepath.Join(f.RunDir, "containerd.sock") }
func (f Files) ContainerdState() string   { return filepath.Join(f.RunDir, "state") }
func (f Files) CertsDir() string          { return filepath.Join(f.Dir, "certs.d") }
func (f Files) CNIConfDir() string        { return filepath.Join(f.Dir, "cni", "net.d") }
func (f Files) CNIIPAMDir() string        { return filepath.Join(f.Dir, "cni", "ipam") }
func (f Files) KubeletConfig() string     { return filepath.Join(f.Dir, "kubelet", "config.yaml") }
func (f Files) KubeletKubeconfig() string { return filepath.Join(f.Dir, "kubelet", "kubeconfig") }
func (f Files) KubeletRoot() string       { return filepath.Join(f.Dir, "kubelet-root") }
func (f Files) PodLogs() string           { return filepath.Join(f.Dir, "pod-logs") }
func (f Files) ProxyConfig() string       { return filepath.Join(f.Dir, "kube-proxy", "config.yaml") }
func (f Files) ProxyKubeconfig() string   { return filepath.Join(f.Dir, "kube-proxy", "kubeconfig") }
func (f Files) Logs() string              { return filepath.Join(f.Dir, "logs") }
func (f Files) HostState() string         { return filepath.Join(f.Dir, "host-state.json") }

// NodeConfigJSON is the node-level docker config.json the kubelet reads from its root
// directory: the cluster pull secret.
func (f Files) NodeConfigJSON() string { return filepath.Join(f.KubeletRoot(), "config.json") }

// Bridge is the Linux bridge the node's pods are attached to.
const Bridge = "pullgate0"

// PodCIDR is the node's pod network: a bridge with host-local addresses.
const PodCIDR = "10.245.0.0/24"

// SandboxImage is the pause image made from pullgate-pause and imported locally.
const SandboxImage = "pullgate.local/pause:1"

// containerdConfig is containerd's config.toml: its own root, state and sockets;
// the CRI plugin with runc, the CNI bridge, the local pause image and certs.d for
// the registries it must trust. restrict_oom_score_adj: runc cannot write
// oom_score_adj where the bounding set lacks CAP_SYS_RESOURCE (these VMs), and it
// changes nothing where it is held but that containers never get a lower score than
// containerd's own.
func containerdConfig(f Files, cniBinDir string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  enable_cdi = false
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[9]q
`, f.ContainerdRoot(), f.ContainerdState(), f.ContainerdSocket(), f.ContainerdSocket()+".ttrpc",
		filepath.Join(f.Dir, "containerd", "opt"), SandboxImage, cniBinDir, f.CNIConfDir(), f.CertsDir())
}

// hostsTOML is containerd's certs.d/<host>/hosts.toml for one name of the
// integrated registry: plain HTTP on loopback, else TLS trusting caFile.
func hostsTOML(host, scheme, caFile string) string {
	server := scheme + "://" + host
	if scheme == "https" {
		return fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", server, server, caFile)
	}
	return fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, server)
}

// cniConfig is a bridge network with host-local addresses from PodCIDR; the bridge
// is the pods' default gateway (Services' cluster IPs are routed through the host,
// where kube-proxy translates them), and a pod reaches itself through its Service.
func cniConfig(f Files) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "pullgate",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "isDefaultGateway": true, "hairpinMode": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, Bridge, PodCIDR, f.CNIIPAMDir())
}

// KubeletOptions are what a kubelet's configuration depends on beyond its files.
type KubeletOptions struct {
	IP          net.IP
	Port        int
	HealthzPort int
	CAFile      string
	ServingCert string
	ServingKey  string
	// VerifyPolicy is imagePullCredentialsVerificationPolicy.
	VerifyPolicy string
}

// kubeletConfig is the KubeletConfiguration: cgroupfs (no systemd here), cgroup v1
// allowed, webhook authentication and authorization (the API server's requests are
// checked as anyone's), its address off loopback (the API server reaches it by the
// node's InternalIP), logs and state under the node's directory, and eviction kept
// low so a busy shared disk does not evict the pods under test.
func kubeletConfig(f Files, o KubeletOptions) string {
	policy := o.VerifyPolicy
	if policy == "" {
		policy = "NeverVerifyPreloadedImages"
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
podLogsDir: %s
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imagePullCredentialsVerificationPolicy: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
`, f.ContainerdSocket(), o.IP, o.Port, o.HealthzPort, o.ServingCert, o.ServingKey, o.CAFile, f.PodLogs(), policy)
}

// ProxyOptions are what kube-proxy's configuration depends on beyond its files.
type ProxyOptions struct {
	NodeName    string
	HealthzPort int
	MetricsPort int
}

// proxyConfig is a KubeProxyConfiguration in iptables mode that leaves the host's
// conntrack settings and route_localnet as they are.
func proxyConfig(f Files, o ProxyOptions) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:%d
metricsBindAddress: 127.0.0.1:%d
iptables:
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, f.ProxyKubeconfig(), o.NodeName, PodCIDR, o.HealthzPort, o.MetricsPort)
}

// TrustRegistry makes the containerd of the node kept in nodeDir (up's
// DIR/nodes/local) reach host (host[:port]) over TLS trusting caFile, as a node's
// administrator does for a registry with a private CA: containerd reads certs.d at
// every pull, so no restart is needed.
func TrustRegistry(nodeDir, host, caFile string) error {
	f := FilesFor(nodeDir)
	if err := os.MkdirAll(registryDir(f, host), 0o755); err != nil {
		return err
	}
	return atomicfile.Replace(filepath.Join(registryDir(f, host), "hosts.toml"), []byte(hostsTOML(host, "https", caFile)), 0o644)
}

// registryDir is certs.d's folder for host: containerd names it host[:port], with
// ':' kept.
func registryDir(f Files, host string) string {
	return filepath.Join(f.CertsDir(), strings.ReplaceAll(host, "/", "_"))
}
