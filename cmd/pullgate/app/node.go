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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/node/agent"
	"pullgate.dev/pullgate/internal/node/credentialplugins"
	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/platform/version"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/pkg/credentials"
)

// nodeOptions are the flags of `pullgate node`.
type nodeOptions struct {
	*globalOptions
	kube           *genericclioptions.ConfigFlags
	name           string
	dataDir        string
	registryHosts  []string
	caFiles        []string
	metricsAddress string
	workers        int
	pullSecretFile string
	plugins        pluginFiles
}

// pluginFiles are the kubelet's credential provider flags.
type pluginFiles struct {
	config, binDir string
}

func newNodeCommand(g *globalOptions) *cobra.Command {
	hostname, _ := os.Hostname()
	o := &nodeOptions{globalOptions: g, kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a pull-only node: pull the images of the pods bound to it, as a kubelet would",
		Long: `Register a Node and pull the images of every pod bound to it, choosing credentials
exactly as a kubelet does: the pod's image pull secrets, then the node's, then the
node's credential provider plugins (run by the kubelet's own code, from the same
--image-credential-provider-config and --image-credential-provider-bin-dir; with
pullgate-credential-provider a pod pulls from the integrated registry with its own
service account's token). Outcomes
are reported on the pods (ErrImagePull, ImagePullBackOff, the ImagesPulled condition)
and as events. It runs no containers: a pulled container stays waiting with reason
PullOnlyNode.

The kubeconfig should be a node's (user system:node:<name>, group system:nodes), so
that the API server's Node authorizer gives it exactly a kubelet's rights.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.name, "name", hostname, "name of the Node to register")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", filepath.Join(datadir.Default(), "node"), "directory for the node's image store")
	cmd.Flags().StringSliceVar(&o.registryHosts, "registry-host", nil, "host[:port] of pullgate's integrated registry (repeatable): an image of it already on the node is given to a pod only while RBAC lets the pod pull it")
	cmd.Flags().StringVar(&o.plugins.config, "image-credential-provider-config", "", "the kubelet's CredentialProviderConfig file (as the kubelet's flag)")
	cmd.Flags().StringVar(&o.plugins.binDir, "image-credential-provider-bin-dir", "", "directory of the credential provider plugins' binaries (as the kubelet's flag)")
	cmd.Flags().StringSliceVar(&o.caFiles, "ca-file", nil, "PEM file of CAs to trust for registries, besides the system's (repeatable)")
	cmd.Flags().StringVar(&o.metricsAddress, "metrics-address", "", "serve Prometheus metrics on this address (e.g. 127.0.0.1:9465); empty: off")
	cmd.Flags().IntVar(&o.workers, "workers", 4, "pods worked on at once")
	cmd.Flags().StringVar(&o.pullSecretFile, "pull-secret-file", "", "the node's credentials (a docker config.json, as the kubelet's config.json), read at each pull, tried after a pod's own secrets")
	return cmd
}

func (o *nodeOptions) Validate() error {
	if o.name == "" {
		return errors.New("--name: must not be empty")
	}
	if o.workers < 1 {
		return fmt.Errorf("--workers %d: must be at least 1", o.workers)
	}
	if (o.plugins.config == "") != (o.plugins.binDir == "") {
		return errors.New("--image-credential-provider-config and --image-credential-provider-bin-dir: give both or neither, as to the kubelet")
	}
	return nil
}

func (o *nodeOptions) Run(ctx context.Context) error {
	log := o.logger()
	restConfig, err := o.kube.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	dir, err := datadir.Open(o.dataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	transport, err := imagepull.TrustingTransport(o.caFiles)
	if err != nil {
		return err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.metricsAddress != "" {
		l, err := net.Listen("tcp", o.metricsAddress)
		if err != nil {
			return fmt.Errorf("--metrics-address %s: %w", o.metricsAddress, err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
	}
	nodeAgent, err := newNodeAgent(restConfig, agent.Config{
		NodeName: o.name, ImageDir: filepath.Join(dir.Path, "images"),
		RegistryHosts: o.registryHosts,
		Transport:     transport, Workers: o.workers, Metrics: metrics, Log: log,
		Ready:           func() { fmt.Fprintf(o.out, "node %s is ready\n", o.name) },
		NodeCredentials: o.nodeCredentials,
	}, o.plugins)
	if err != nil {
		return err
	}
	return nodeAgent.Run(ctx)
}

// newNodeAgent builds an agent whose client is made from restConfig, with the
// credential provider plugins of plugins, if any.
func newNodeAgent(restConfig *rest.Config, cfg agent.Config, plugins pluginFiles) (*agent.Agent, error) {
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	cfg.Client = client
	if plugins.config != "" {
		if cfg.CredentialProviders, err = credentialplugins.Register(plugins.config, plugins.binDir, client); err != nil {
			return nil, err
		}
	}
	cfg.Version = version.Version
	if cfg.PullAuthorizer == nil && len(cfg.RegistryHosts) > 0 {
		cfg.PullAuthorizer = agent.SubjectAccessReviews{Client: client}
		// Nodes may get ImageStreams by name (identities.Node).
		dyn, err := dynamic.NewForConfig(restConfig)
		if err != nil {
			return nil, err
		}
		cfg.Streams = imageapi.Streams{Client: dyn}
	}
	return agent.New(cfg)
}

// runningAgent is a node agent run by `up`.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(a *agent.Agent, log *slog.Logger) *runningAgent {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := a.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("node agent stopped", "err", err)
		}
	}()
	return r
}

func (r *runningAgent) Stop() {
	r.cancel()
	<-r.done
}

// nodeCredentials reads --pull-secret-file, if given, as the kubelet reads its
// config.json.
func (o *nodeOptions) nodeCredentials(context.Context) ([]*credentials.Config, error) {
	if o.pullSecretFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(o.pullSecretFile)
	if err != nil {
		return nil, err
	}
	cfg, err := credentials.ParseNodeConfig(data, credentials.Source{Kind: "node pull secret file", Name: o.pullSecretFile})
	if err != nil {
		return nil, err
	}
	return []*credentials.Config{cfg}, nil
}
