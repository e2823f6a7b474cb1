// Package kubelet runs a real node for `pullgate up --node kubelet`: containerd with
// its own configuration and state, the kubelet and kube-proxy of the Kubernetes
// release pullgate embeds, a CNI bridge and a locally made pause image, with a node
// certificate of up's CA and pullgate's credential provider. Everything they change on
// the host (sysctls, iptables chains, cgroups, mounts, the bridge, directories) is
// recorded before they start and put back when the node stops, or at the next start
// after a SIGKILL.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/platform/kubeconfig"
	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// Binaries are the programs a node runs besides containerd and runc from the host.
type Binaries struct {
	Kubelet, KubeProxy, Pause string
}

// BinariesBeside are the kubelet, kube-proxy and pullgate-pause in dir, where
// `make build` puts them beside pullgate.
func BinariesBeside(dir string) Binaries {
	return Binaries{
		Kubelet:   filepath.Join(dir, "kubelet"),
		KubeProxy: filepath.Join(dir, "kube-proxy"),
		Pause:     filepath.Join(dir, "pullgate-pause"),
	}
}

// Config is a node joining up's cluster.
type Config struct {
	Dir  string
	Name string
	// IP is the node's address; nil picks the host's first global IPv4 address (the
	// API server reaches the kubelet there, and a kubelet may not be on loopback).
	IP        net.IP
	APIServer string
	CA        *pki.Dir
	// APIServerKubeletClient is the user the API server presents to kubelets; the
	// node lets it use the kubelet API (system:kubelet-api-admin).
	APIServerKubeletClient string
	// Admin creates that binding and waits for the node to be Ready.
	Admin kubernetes.Interface
	// RegistryHosts are the integrated registry's names, reached over RegistryScheme.
	RegistryHosts  []string
	RegistryScheme string
	// CredentialProviderConfig and CredentialProviderBinDir wire pullgate's plugin.
	CredentialProviderConfig, CredentialProviderBinDir string
	// VerifyPolicy is the kubelet's imagePullCredentialsVerificationPolicy.
	VerifyPolicy string
	Binaries     Binaries
	Log          *slog.Logger
}

// Node is a running node.
type Node struct {
	cfg    Config
	files  Files
	state  hostState
	procs  map[string]*exec.Cmd
	cancel context.CancelFunc
	log    *slog.Logger
}

// cniBinDirs are where Debian's containernetworking-plugins and upstream's releases
// put the CNI plugins.
var cniBinDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

const aptPackages = "apt-get install -y containerd runc containernetworking-plugins iptables"

// Check says in one line why a node cannot run here, or nil.
func Check(b Binaries) error {
	if os.Geteuid() != 0 {
		return errors.New("--node kubelet: must run as root (containerd and the kubelet change cgroups, mounts, iptables and sysctls); run it with sudo, or use --node agent")
	}
	var missing []string
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if cniBinDir() == "" {
		missing = append(missing, "CNI plugins (bridge, host-local, portmap)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("--node kubelet: %s not found: install with %s, or use --node agent", strings.Join(missing, ", "), aptPackages)
	}
	for _, p := range []string{b.Kubelet, b.KubeProxy, b.Pause} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("--node kubelet: %s not found: make build builds it beside pullgate", p)
		}
	}
	return nil
}

func cniBinDir() string {
	for _, d := range cniBinDirs {
		ok := true
		for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

// Start puts back what an earlier, killed node left on the host, records the host,
// then starts containerd, the kubelet and kube-proxy and returns once the node is
// Ready.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := Check(cfg.Binaries); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, files: FilesFor(cfg.Dir), procs: map[string]*exec.Cmd{}, log: log}
	if old, ok, err := loadHostState(n.files.HostState()); err != nil {
		return nil, err
	} else if ok {
		log.Info("putting back what a node left on this host when it was killed")
		if err := restoreHost(n.files, old, log); err != nil {
			return nil, fmt.Errorf("--node kubelet: an earlier node's changes to this host could not all be undone: %w", err)
		}
		_ = os.Remove(n.files.HostState())
	}
	if roots := cgroupRoots(); len(roots) > 0 {
		return nil, fmt.Errorf("--node kubelet: another kubelet runs on this host (%s exists); only one can: stop it, or use --node agent", roots[0])
	}
	if cfg.IP == nil {
		ip, err := HostIP()
		if err != nil {
			return nil, err
		}
		n.cfg.IP = ip
	}
	n.state = snapshotHost()
	if err := n.state.save(n.files.HostState()); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if err := n.start(ctx, runCtx); err != nil {
		n.Stop()
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx, runCtx context.Context) error {
	ports, err := listen.FreePorts(4)
	if err != nil {
		return err
	}
	if err := n.writeFiles(ports); err != nil {
		return err
	}
	if err := n.run("containerd", "containerd", "--config", n.files.ContainerdConfig()); err != nil {
		return err
	}
	if err := n.waitContainerd(ctx); err != nil {
		return err
	}
	archive := filepath.Join(n.cfg.Dir, "pause.tar")
	if err := writePauseArchive(n.cfg.Binaries.Pause, archive); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "ctr", "--address", n.files.ContainerdSocket(), "-n", "k8s.io", "images", "import", archive).CombinedOutput(); err != nil {
		return fmt.Errorf("importing the pause image into containerd: %v: %s", err, out)
	}
	if err := n.allowAPIServer(ctx); err != nil {
		return err
	}
	go n.syncPullSecret(runCtx)
	args := []string{
		"--config=" + n.files.KubeletConfig(), "--kubeconfig=" + n.files.KubeletKubeconfig(),
		"--hostname-override=" + n.cfg.Name, "--node-ip=" + n.cfg.IP.String(),
		"--root-dir=" + n.files.KubeletRoot(), "--cert-dir=" + filepath.Join(n.files.KubeletRoot(), "pki"),
		"--image-credential-provider-config=" + n.cfg.CredentialProviderConfig,
		"--image-credential-provider-bin-dir=" + n.cfg.CredentialProviderBinDir,
		"--v=1",
	}
	if err := n.run("kubelet", n.cfg.Binaries.Kubelet, args...); err != nil {
		return err
	}
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	return n.run("kube-proxy", n.cfg.Binaries.KubeProxy, "--config="+n.files.ProxyConfig(), "--v=1")
}

// writeFiles writes containerd's, the CNI's, the kubelet's and kube-proxy's
// configuration, kubeconfigs and certificates.
func (n *Node) writeFiles(ports []int) error {
	f := n.files
	client, err := n.cfg.CA.ClientCert("node-"+n.cfg.Name, "system:node:"+n.cfg.Name, "system:nodes")
	if err != nil {
		return err
	}
	serving, err := n.cfg.CA.ServingCert("kubelet-"+n.cfg.Name, []string{n.cfg.Name, n.cfg.IP.String()})
	if err != nil {
		return err
	}
	proxy, err := n.cfg.CA.ClientCert("kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	caFile := filepath.Join(n.cfg.CA.Path, pki.CAFile)
	files := map[string]string{
		f.ContainerdConfig(): containerdConfig(f, cniBinDir()),
		filepath.Join(f.CNIConfDir(), "10-pullgate.conflist"): cniConfig(f),
		f.KubeletConfig(): kubeletConfig(f, KubeletOptions{
			IP: n.cfg.IP, Port: ports[0], HealthzPort: ports[1], CAFile: caFile,
			ServingCert: serving.CertFile, ServingKey: serving.KeyFile, VerifyPolicy: n.cfg.VerifyPolicy,
		}),
		f.ProxyConfig(): proxyConfig(f, ProxyOptions{NodeName: n.cfg.Name, HealthzPort: ports[2], MetricsPort: ports[3]}),
	}
	for _, host := range n.cfg.RegistryHosts {
		files[filepath.Join(registryDir(f, host), "hosts.toml")] = hostsTOML(host, n.cfg.RegistryScheme, caFile)
	}
	for path, content := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := atomicfile.Replace(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for _, d := range []string{f.KubeletRoot(), f.PodLogs(), f.Logs(), f.CNIIPAMDir(), f.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := kubeconfig.WriteClientCert(f.KubeletKubeconfig(), "pullgate", n.cfg.APIServer, caFile, client); err != nil {
		return err
	}
	return kubeconfig.WriteClientCert(f.ProxyKubeconfig(), "pullgate", n.cfg.APIServer, caFile, proxy)
}

// run starts a node process, logging to logs/<name>.log; it dies with this process.
func (n *Node) run(name, path string, args ...string) error {
	logFile, err := os.OpenFile(filepath.Join(n.files.Logs(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	n.procs[name] = cmd
	n.state.PIDs[name] = cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	return n.state.save(n.files.HostState())
}

// exited says whether the named process has ended, with the end of its log.
func (n *Node) exited(name string) error {
	cmd := n.procs[name]
	if cmd == nil || syscall.Kill(cmd.Process.Pid, 0) == nil && !zombie(cmd.Process.Pid) {
		return nil
	}
	data, _ := os.ReadFile(filepath.Join(n.files.Logs(), name+".log"))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return fmt.Errorf("%s exited (log %s): %s", name, filepath.Join(n.files.Logs(), name+".log"), strings.Join(lines, "\n"))
}

func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(stat), ") Z ")
}

func (n *Node) waitContainerd(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := n.exited("containerd"); err != nil {
			return false, err
		}
		return exec.CommandContext(ctx, "ctr", "--address", n.files.ContainerdSocket(), "version").Run() == nil, nil
	})
}

func (n *Node) waitReady(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := n.exited("kubelet"); err != nil {
			return false, err
		}
		node, err := n.cfg.Admin.CoreV1().Nodes().Get(ctx, n.cfg.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s did not become Ready (kubelet log: %s): %w", n.cfg.Name, filepath.Join(n.files.Logs(), "kubelet.log"), err)
	}
	return nil
}

// allowAPIServer lets the API server's kubelet client use the kubelet API (logs,
// exec, port-forward), as kubeadm binds its apiserver-kubelet-client.
func (n *Node) allowAPIServer(ctx context.Context) error {
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pullgate:apiserver-kubelet-client"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: n.cfg.APIServerKubeletClient}},
	}
	_, err := n.cfg.Admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("clusterrolebinding %s: %w", binding.Name, err)
	}
	return nil
}

// Stop stops kube-proxy, the kubelet, the pods and containerd, then puts the host
// back as it was.
func (n *Node) Stop() {
	if n.cancel != nil {
		n.cancel()
	}
	for _, name := range []string{"kube-proxy", "kubelet"} {
		n.terminate(name)
	}
	killCgroupProcesses()
	n.terminate("containerd")
	if err := restoreHost(n.files, n.state, n.log); err != nil {
		n.log.Error("the node's changes to this host were not all undone; the next start tries again", "err", err)
		return
	}
	_ = os.Remove(n.files.HostState())
}

func (n *Node) terminate(name string) {
	cmd := n.procs[name]
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitGone(cmd.Process.Pid, 10*time.Second)
	_ = cmd.Process.Kill()
	waitGone(cmd.Process.Pid, 5*time.Second)
	delete(n.state.PIDs, name)
}

// HostIP is the host's first global unicast IPv4 address.
func HostIP() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 || iface.Name == Bridge {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP, nil
			}
		}
	}
	return nil, errors.New("--node kubelet: this host has no IPv4 address off loopback for the kubelet (the API server reaches it there); give one with --node-ip")
}
