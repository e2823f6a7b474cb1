package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"pullgate.dev/pullgate/internal/node/clusterpullsecret"
	"pullgate.dev/pullgate/internal/openshift/apiserver"
	"pullgate.dev/pullgate/internal/openshift/console"
	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/platform/controlplane"

	"pullgate.dev/pullgate/internal/identities"
	"pullgate.dev/pullgate/internal/node/agent"
	"pullgate.dev/pullgate/internal/node/credprovider"
	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/internal/node/kubelet"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/internal/registry"
	"pullgate.dev/pullgate/internal/services"
	"pullgate.dev/pullgate/pkg/credentials"
)

// upOptions are the flags of `pullgate up`.
type upOptions struct {
	*globalOptions
	dataDir      string
	apiPort      int
	bindAddress  string
	controllers  []string
	registryPort int
	blobTransfer string
	registryBind string
	// registryHostnames are more names clients reach the registry by.
	registryHostnames []string
	// pullSecret is a docker config.json stored as the cluster pull secret.
	pullSecret string
	// storageReserve is the free space the registry keeps for etcd and the rest.
	storageReserve string
	drainTimeout   time.Duration
	// leaderElect runs pullgate's controllers in process (elected, as any replica).
	leaderElect bool
	// profiling serves /debug/pprof on the API server.
	profiling bool
	// console serves the web console on consoleListen.
	console       bool
	consoleListen string
	// pullSecrets gives service accounts <sa>-dockercfg secrets.
	pullSecrets   bool
	pruneInterval time.Duration
	pruneKeep     time.Duration
	// reconcileInterval is how often storage and ImageStreams are compared.
	reconcileInterval time.Duration
	// importInterval is how often scheduled image stream tags are imported again.
	importInterval time.Duration
	// selfProvisioners are the groups bound to self-provisioner, when
	// setSelfProvisioners (the flag was given).
	selfProvisioners    []string
	setSelfProvisioners bool
	// node is which node up runs: agent, kubelet or none.
	node   string
	nodeIP net.IP
}

// The nodes `up --node` can run.
const (
	nodeAgent   = "agent"
	nodeKubelet = "kubelet"
	nodeNone    = "none"
)

func newUpCommand(g *globalOptions) *cobra.Command {
	return upCommand(&upOptions{globalOptions: g})
}

// upCommand is `pullgate up` filling in o.
func upCommand(o *upOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run etcd, kube-apiserver, kube-controller-manager and pullgate on this machine",
		Long: `Run the whole of pullgate on one machine: an embedded etcd, the real kube-apiserver
and kube-controller-manager, in this process. Data, PKI and kubeconfigs live in
--data-dir and survive restarts. SIGINT or SIGTERM stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if err := o.Complete(cmd.Flags().Changed("bind-address")); err != nil {
				return err
			}
			o.setSelfProvisioners = cmd.Flags().Changed("self-provisioners")
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data-dir", datadir.Default(), "directory for etcd data, PKI and kubeconfigs")
	cmd.Flags().IntVar(&o.apiPort, "api-port", 6443, "port of the Kubernetes API server")
	cmd.Flags().StringVar(&o.bindAddress, "bind-address", "127.0.0.1", "address the Kubernetes API server listens on")
	cmd.Flags().StringSliceVar(&o.controllers, "controllers", controlplane.DefaultControllers, "kube-controller-manager controllers to run")
	cmd.Flags().IntVar(&o.registryPort, "registry-port", 5000, "port of the integrated registry and its token service (plain HTTP on loopback)")
	cmd.Flags().StringVar(&o.registryBind, "registry-bind-address", "127.0.0.1", "address the registry listens on; anything but loopback is served over TLS with a certificate from the pullgate CA")
	cmd.Flags().StringVar(&o.pullSecret, "pull-secret", "", "docker config.json to store as the cluster pull secret (pullgate-system/pull-secret), used by every node after a pod's own secrets")
	cmd.Flags().StringSliceVar(&o.registryHostnames, "registry-hostname", nil, "another host[:port] clients reach the registry by (repeatable); written into the service accounts' pull secrets")
	cmd.Flags().StringSliceVar(&o.selfProvisioners, "self-provisioners", nil, "groups that may make their own projects (oc new-project); OpenShift's default is --self-provisioners=system:authenticated; an empty value lets only administrators; unset leaves the binding self-provisioners as it is (none on a new cluster)")
	cmd.Flags().DurationVar(&o.importInterval, "image-import-interval", apiserver.DefaultImportInterval, "how often scheduled image stream tags (oc tag --scheduled, oc import-image --scheduled) are imported again")
	cmd.Flags().StringVar(&o.blobTransfer, "blob-transfer", string(registry.TransferBuffered), "how blob GETs are copied from disk: buffered or sendfile")
	cmd.Flags().StringVar(&o.storageReserve, "registry-storage-reserve", "1GiB", "free space the registry keeps on its disk (shared with etcd): a push that would leave less is refused with 507")
	cmd.Flags().DurationVar(&o.pruneInterval, "prune-interval", 0, "prune the registry's storage this often, as pullgate adm prune --confirm does (0: never)")
	cmd.Flags().DurationVar(&o.pruneKeep, "prune-keep-younger-than", time.Hour, "what --prune-interval's prunes keep for its age, as pullgate adm prune --keep-younger-than")
	cmd.Flags().DurationVar(&o.reconcileInterval, "reconcile-interval", services.DefaultReconcileInterval, "how often ImageStreams are repaired to show exactly what the registry's storage holds (also at start)")
	cmd.Flags().BoolVar(&o.pullSecrets, "serviceaccount-pull-secrets", true, "give every service account a <sa>-dockercfg pull secret for the integrated registry; false removes those written before (for kubelets that pull with pullgate credential-provider)")
	cmd.Flags().BoolVar(&o.console, "console", true, "serve the web console on loopback, acting as the administrator up made, and print its URL with the ready line")
	cmd.Flags().StringVar(&o.consoleListen, "console-listen", "127.0.0.1:0", "loopback address of the web console (port 0: any free port)")
	cmd.Flags().BoolVar(&o.profiling, "profiling", false, "serve Go's profiles (heap, CPU, goroutines) of the whole process at the API server's /debug/pprof, to administrators: kubectl get --raw /debug/pprof/heap")
	cmd.Flags().BoolVar(&o.leaderElect, "leader-elect", true, "run pullgate's controllers here, elected on Lease pullgate-system/pullgate-controllers; false leaves them to `pullgate controllers` or `registry serve` replicas")
	cmd.Flags().StringVar(&o.node, "node", nodeAgent, "the node up runs: agent (pullgate's pull-only node agent, any user), kubelet (containerd, the real kubelet and kube-proxy; root, apt-get install -y containerd runc containernetworking-plugins) or none (join real nodes)")
	cmd.Flags().IPVar(&o.nodeIP, "node-ip", nil, "--node kubelet: the node's address (default: the host's first IPv4 address off loopback)")
	cmd.Flags().DurationVar(&o.drainTimeout, "drain-timeout", services.DefaultDrainTimeout, "on SIGTERM, how long transfers in flight may take to finish; a second signal exits at once")
	return cmd
}

func (o *upOptions) Validate() error {
	for flag, port := range map[string]int{"--api-port": o.apiPort, "--registry-port": o.registryPort} {
		if port < 1 || port > 65535 {
			return fmt.Errorf("%s %d: must be between 1 and 65535", flag, port)
		}
	}
	if err := validBlobTransfer(o.blobTransfer); err != nil {
		return err
	}
	reserve, err := parseSize("--registry-storage-reserve", o.storageReserve)
	if err != nil {
		return err
	}
	// Storage full down to the reserve must still let up start again.
	if reserve > 0 && reserve < datadir.MinFree {
		return fmt.Errorf("--registry-storage-reserve %s: pullgate up needs %s free in its data directory to start, so the registry must keep at least that (or 0 for no reserve)",
			o.storageReserve, units.BytesSize(datadir.MinFree))
	}
	if o.apiPort == o.registryPort {
		return fmt.Errorf("--registry-port %d: the API server already uses it", o.registryPort)
	}
	if o.dataDir == "" {
		return errors.New("--data-dir: must not be empty")
	}
	switch o.node {
	case nodeAgent, nodeNone:
	case nodeKubelet:
		return kubelet.Check(kubeletBinaries())
	default:
		return fmt.Errorf("--node %q: want %s, %s or %s", o.node, nodeAgent, nodeKubelet, nodeNone)
	}
	return nil
}

// Complete fills in what --node kubelet implies: the node's address, and the API
// server listening there (unless --bind-address says otherwise) so that pods reach
// it through Service kubernetes, as on any cluster.
func (o *upOptions) Complete(bindAddressSet bool) error {
	if o.node != nodeKubelet {
		return nil
	}
	if o.nodeIP == nil {
		ip, err := kubelet.HostIP()
		if err != nil {
			return err
		}
		o.nodeIP = ip
	}
	if !bindAddressSet {
		o.bindAddress = o.nodeIP.String()
	}
	// The API server's own loopback client, the kubelet, kube-proxy and containerd
	// inherit this environment: never through a proxy to the node, Services or pods.
	bypassProxy(o.bindAddress, o.nodeIP.String(), controlplane.ServiceCIDR, kubelet.PodCIDR)
	return nil
}

// bypassProxy adds hosts to NO_PROXY (and no_proxy) when a proxy is set, before
// anything in this process reads them.
func bypassProxy(hosts ...string) {
	if os.Getenv("HTTPS_PROXY")+os.Getenv("https_proxy")+os.Getenv("HTTP_PROXY")+os.Getenv("http_proxy") == "" {
		return
	}
	for _, key := range []string{"NO_PROXY", "no_proxy"} {
		list := hosts
		if old := os.Getenv(key); old != "" {
			list = append([]string{old}, hosts...)
		}
		os.Setenv(key, strings.Join(list, ","))
	}
}

// kubeletBinaries are the kubelet, kube-proxy and pause beside this binary, where
// make build puts them.
func kubeletBinaries() kubelet.Binaries {
	self, err := os.Executable()
	if err != nil {
		self = "pullgate"
	}
	return kubelet.BinariesBeside(filepath.Dir(self))
}

func (o *upOptions) Run(ctx context.Context) error {
	log := o.logger()
	log.Info("starting pullgate", "data-dir", o.dataDir)
	registryListener, err := listen.TCP(net.JoinHostPort(o.registryBind, strconv.Itoa(o.registryPort)), "--registry-port")
	if err != nil {
		return err
	}
	defer registryListener.Close()
	plane, err := controlplane.Start(ctx, controlplane.Config{
		DataDir:     o.dataDir,
		APIPort:     o.apiPort,
		BindAddress: o.bindAddress,
		Controllers: o.controllers,
		Verbosity:   o.verbosity,
		Profiling:   o.profiling,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	running, node, err := o.startServices(ctx, plane, registryListener, log)
	if err != nil {
		plane.Stop()
		return err
	}
	if err := startOpenShiftAPI(ctx, plane, running, openShiftSettings{importInterval: o.importInterval, selfProvisioners: o.selfProvisioners, setSelfProvisioners: o.setSelfProvisioners}, log.With("component", "openshift-api")); err != nil {
		log.Warn("the OpenShift APIs (project.openshift.io, authorization.openshift.io, image.openshift.io) are not served", "err", err)
	}
	consoleURL := ""
	if o.console {
		// The console acts as the administrator up made, the kubeconfig it prints.
		adminConfig, err := clientcmd.BuildConfigFromFlags("", plane.AdminKubeconfig)
		if err == nil {
			srv, url, err := console.Start(ctx, adminConfig, o.consoleListen, log.With("component", "console"))
			if err != nil {
				log.Warn("the web console did not start", "err", err)
			} else {
				consoleURL = "; console: " + url
				if err := console.ServeLoginLinks(ctx, console.LinkSocket(plane.DataDir), srv); err != nil {
					log.Warn("pullgate console --url cannot reach this console", "err", err)
				}
			}
		}
	}
	fmt.Fprintf(o.out, "pullgate is ready: export KUBECONFIG=%s%s\n", plane.AdminKubeconfig, consoleURL)

	select {
	case <-ctx.Done():
		log.Info("stopping")
		begin := time.Now()
		node.Stop()
		running.Stop()
		plane.Stop()
		log.Info("stopped", "took", time.Since(begin).Round(time.Millisecond))
		return nil
	case err := <-plane.Done():
		node.Stop()
		running.Stop()
		plane.Stop()
		return err
	}
}

// nodeName is the node `up` runs.
const nodeName = "local"

// stopper is a running node.
type stopper interface{ Stop() }

type noNode struct{}

func (noNode) Stop() {}

// startServices starts the registry, token service and controllers, then the node
// --node asks for, each as its own identity: pullgate:registry, pullgate:token-service
// and pullgate:controllers with their own roles (identities.Identities), and
// system:node:local, which the API server's Node authorizer treats as a kubelet.
func (o *upOptions) startServices(ctx context.Context, plane *controlplane.Plane, listener net.Listener, log *slog.Logger) (*services.Running, stopper, error) {
	adminConfig, err := clientcmd.BuildConfigFromFlags("", plane.AdminKubeconfig)
	if err != nil {
		return nil, nil, err
	}
	ca, err := pki.Open(filepath.Join(plane.DataDir, "pki"))
	if err != nil {
		return nil, nil, err
	}
	admin, err := kubernetes.NewForConfig(adminConfig)
	if err != nil {
		return nil, nil, err
	}
	if err := identities.Install(ctx, adminConfig); err != nil {
		return nil, nil, err
	}
	if o.pullSecret != "" {
		if err := clusterpullsecret.Set(ctx, admin, o.pullSecret); err != nil {
			return nil, nil, fmt.Errorf("--pull-secret %s: %w", o.pullSecret, err)
		}
	}
	// One identity per component, each a client certificate of up's CA.
	var configs [3]*rest.Config
	for i, id := range []identities.Identity{identities.Registry(), identities.TokenService(), identities.Controllers()} {
		if configs[i], err = clientCertConfig(adminConfig, ca, "pullgate-"+id.Component, id.User); err != nil {
			return nil, nil, err
		}
	}
	scheme := o.registryScheme()
	if scheme == "https" {
		// Off loopback, clients see the registry over TLS, trusting the pullgate CA.
		if listener, err = o.tlsListener(ca, listener); err != nil {
			return nil, nil, err
		}
	}
	names := registryNames("localhost:"+strconv.Itoa(o.registryPort), o.registryPort, o.registryHostnames)
	// Registries are reached trusting the pullgate CA besides the system's, by the
	// node and the pull-through alike: the registry's certificate off loopback, and any
	// registry an administrator certifies with it.
	trusting, err := imagepull.TrustingTransport([]string{filepath.Join(ca.Path, pki.CAFile)})
	if err != nil {
		return nil, nil, err
	}
	cfg := o.servicesConfig(plane.DataDir, names, configs, log)
	// Pull-through of imports (--reference-policy=local): the project's pull secrets
	// read with up's administrator.
	cfg.PullThroughCredentials = func(ctx context.Context, namespace, image string) (credentials.Candidates, error) {
		return images.ProjectCredentials(ctx, admin, namespace, image)
	}
	cfg.PullThroughTransport = trusting
	running, err := services.Start(ctx, cfg, listener)
	if err != nil {
		return nil, nil, err
	}
	nodeDir := filepath.Join(plane.DataDir, "nodes", nodeName)
	plugins, err := writeCredentialProvider(nodeDir, names)
	if err != nil {
		running.Stop()
		return nil, nil, err
	}
	var node stopper = noNode{}
	switch o.node {
	case nodeAgent:
		node, err = o.startAgent(adminConfig, admin, ca, trusting, running, nodeDir, names, plugins, log)
	case nodeKubelet:
		node, err = kubelet.Start(ctx, kubelet.Config{
			Dir:                      nodeDir,
			Name:                     nodeName,
			IP:                       o.nodeIP,
			APIServer:                plane.Server,
			CA:                       ca,
			APIServerKubeletClient:   controlplane.KubeletClientUser,
			Admin:                    admin,
			RegistryHosts:            names,
			RegistryScheme:           scheme,
			CredentialProviderConfig: plugins.config,
			CredentialProviderBinDir: plugins.binDir,
			Binaries:                 kubeletBinaries(),
			Log:                      log.With("component", "node"),
		})
	}
	if err != nil {
		running.Stop()
		return nil, nil, err
	}
	return running, node, nil
}

// startAgent runs pullgate's node agent in process as system:node:local.
func (o *upOptions) startAgent(adminConfig *rest.Config, admin kubernetes.Interface, ca *pki.Dir, transport http.RoundTripper, running *services.Running, nodeDir string, names []string, plugins pluginFiles, log *slog.Logger) (stopper, error) {
	nodeConfig, err := clientCertConfig(adminConfig, ca, "node-"+nodeName, "system:node:"+nodeName, "system:nodes")
	if err != nil {
		return nil, err
	}
	nodeAgent, err := newNodeAgent(nodeConfig, agent.Config{
		NodeName:       nodeName,
		ImageDir:       filepath.Join(nodeDir, "images"),
		RegistryHosts:  names,
		PullAuthorizer: agent.RBACPullAuthorizer{Authz: running.Authz},
		Streams:        running.Streams,
		// The node's credentials: the cluster pull secret, read by the in-process agent
		// with the administrator's client (a node's identity may not read it).
		NodeCredentials: func(ctx context.Context) ([]*credentials.Config, error) {
			return clusterpullsecret.Get(ctx, admin)
		},
		Transport: transport,
		Metrics:   running.Metrics,
		Log:       log.With("component", "node-agent"),
	}, plugins)
	if err != nil {
		return nil, err
	}
	return startAgent(nodeAgent, log), nil
}

// registryScheme is how clients reach the registry: plain HTTP on loopback, TLS
// with a certificate of up's CA anywhere else.
func (o *upOptions) registryScheme() string {
	if ip := net.ParseIP(o.registryBind); ip != nil && ip.IsLoopback() {
		return "http"
	}
	return "https"
}

// servicesConfig is the registry, token service and controllers as up's flags ask,
// each component with its own identity (registry, token service, controllers).
func (o *upOptions) servicesConfig(dataDir string, names []string, identities [3]*rest.Config, log *slog.Logger) services.Config {
	reserve, _ := parseSize("", o.storageReserve) // checked by Validate
	return services.Config{
		RegistryNames:     names,
		Scheme:            o.registryScheme(),
		KubeConfig:        identities[0],
		TokenReviewConfig: identities[1],
		ControllersConfig: identities[2],
		DataDir:           dataDir,
		// One up per data directory (it is locked), so the name is stable: after a
		// restart up takes its Lease back at once instead of waiting for it to expire.
		Identity:             "pullgate-up@" + hostname(),
		NoControllers:        !o.leaderElect,
		NoPullSecrets:        !o.pullSecrets,
		BlobTransfer:         registry.BlobTransfer(o.blobTransfer),
		StorageReserve:       reserve,
		DrainTimeout:         o.drainTimeout,
		PruneInterval:        o.pruneInterval,
		PruneKeepYoungerThan: o.pruneKeep,
		ReconcileInterval:    o.reconcileInterval,
		Log:                  log,
	}
}

// writeCredentialProvider sets up up's node as a kubelet with pullgate's credential
// provider plugin: a CredentialProviderConfig for the registry's names and a bin
// directory holding the plugin (pullgate-credential-provider beside this binary, as
// make build leaves it; else this binary, which is the same plugin as
// `pullgate credential-provider`). Written at every start: the names may change.
func writeCredentialProvider(nodeDir string, hosts []string) (pluginFiles, error) {
	self, err := os.Executable()
	if err != nil {
		return pluginFiles{}, err
	}
	target, args := filepath.Join(filepath.Dir(self), credprovider.PluginName), []string(nil)
	if _, err := os.Stat(target); err != nil {
		target, args = self, []string{"credential-provider"}
	}
	files := pluginFiles{config: filepath.Join(nodeDir, "credential-providers.yaml"), binDir: filepath.Join(nodeDir, "credential-provider-bin")}
	if err := os.MkdirAll(files.binDir, 0o755); err != nil {
		return pluginFiles{}, err
	}
	link := filepath.Join(files.binDir, credprovider.PluginName)
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return pluginFiles{}, err
	}
	if err := os.Symlink(target, link); err != nil {
		return pluginFiles{}, err
	}
	return files, atomicfile.Replace(files.config, credprovider.KubeletConfig(hosts, args...), 0o644)
}

// clientCertConfig is adminConfig's server with a client certificate for user.
func clientCertConfig(adminConfig *rest.Config, ca *pki.Dir, name, user string, groups ...string) (*rest.Config, error) {
	cert, err := ca.ClientCert(name, user, groups...)
	if err != nil {
		return nil, err
	}
	cfg := rest.AnonymousClientConfig(adminConfig)
	cfg.CertFile, cfg.KeyFile = cert.CertFile, cert.KeyFile
	return cfg, nil
}

// registryNames are the names the integrated registry answers to on this machine,
// and the extra ones given with --registry-hostname.
func registryNames(host string, port int, extra []string) []string {
	p := strconv.Itoa(port)
	names := []string{host}
	for _, n := range append([]string{"localhost:" + p, "127.0.0.1:" + p}, extra...) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// parseSize reads a size such as 1GiB, 512MiB or 0 (0: none, which is -1 to the
// registry).
func parseSize(flag, v string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: want a size such as 1GiB, 512MiB or 0", flag, v)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

func validBlobTransfer(v string) error {
	switch registry.BlobTransfer(v) {
	case registry.TransferBuffered, registry.TransferSendfile:
		return nil
	}
	return fmt.Errorf("--blob-transfer %q: want %s or %s", v, registry.TransferBuffered, registry.TransferSendfile)
}

// tlsListener serves listener with a certificate signed by the pullgate CA for
// localhost, the bind address and the host name.
func (o *upOptions) tlsListener(ca *pki.Dir, listener net.Listener) (net.Listener, error) {
	hosts := []string{"localhost", "127.0.0.1"}
	if ip := net.ParseIP(o.registryBind); ip != nil && !ip.IsUnspecified() {
		hosts = append(hosts, o.registryBind)
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts = append(hosts, name)
	}
	kp, err := ca.ServingCert("registry", hosts)
	if err != nil {
		return nil, err
	}
	return withTLS(listener, kp.CertFile, kp.KeyFile)
}

func hostname() string {
	name, _ := os.Hostname()
	return name
}
