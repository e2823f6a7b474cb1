package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"pullgate.dev/pullgate/internal/cli"
	"pullgate.dev/pullgate/internal/openshift/imagelookup"
	"pullgate.dev/pullgate/internal/platform/datadir"
	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/registry"
	"pullgate.dev/pullgate/internal/services"
)

func newRegistryCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "The integrated registry and its token service",
		Run:   cmdutil.DefaultSubCommandRun(g.errOut),
	}
	cmd.AddCommand(newRegistryServeCommand(g))
	cmd.AddCommand(cli.RegistryCommands(genericiooptions.IOStreams{In: os.Stdin, Out: g.out, ErrOut: g.errOut})...)
	return cmd
}

// registryServeOptions are the flags of `pullgate registry serve`.
type registryServeOptions struct {
	*globalOptions
	kube          *genericclioptions.ConfigFlags
	listen        string
	host          string
	dataDir       string
	storage       string
	storageParams []string
	paramDir      string
	redirect      bool
	controllers   bool
	pullSecrets   bool
	tlsCert       string
	tlsKey        string
	blobTransfer  string
	standalone    bool
	htpasswd      string
	tokenRealm    string
	tokenService  string
	tokenIssuer   string
	tokenJWKS     string
	reserve       string
	drain, grace  time.Duration
	pruneInterval time.Duration
	pruneKeep     time.Duration
	// reconcileInterval is how often storage and ImageStreams are compared.
	reconcileInterval time.Duration
	// The image lookup webhook: where, and who may call it.
	lookupListen, lookupClientCA, lookupCaller string
}

func newRegistryServeCommand(g *globalOptions) *cobra.Command {
	o := &registryServeOptions{globalOptions: g, kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the registry and token service against any cluster's API",
		Long: `Serve the integrated registry and its token service against the cluster your
kubeconfig points at. It installs the ImageStream CRD and the registry's cluster
roles (idempotently), keeps every namespace's registry role bindings, and decides
access by that cluster's RBAC. Blobs go to any distribution storage driver:
--storage s3 --storage-param bucket=… --storage-param region=… for a real cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			storage, err := o.storageConfig()
			if err != nil {
				return err
			}
			return o.Run(cmd.Context(), storage)
		},
	}
	o.kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:5000", "address to serve the registry and /token on")
	cmd.Flags().StringVar(&o.host, "hostname", "", "host[:port] clients pull from, recorded in ImageStreams (default localhost:<port>)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", filepath.Join(datadir.Default(), "registry-serve"), "directory for filesystem storage and the public keys tokens are verified with")
	cmd.Flags().StringVar(&o.storage, "storage", "filesystem", "distribution storage driver: filesystem, s3, inmemory")
	cmd.Flags().StringArrayVar(&o.storageParams, "storage-param", nil, "storage driver parameter key=value (repeatable)")
	cmd.Flags().StringVar(&o.paramDir, "storage-param-dir", "", "directory of storage driver parameters, one file per key holding its value (a mounted Secret: accesskey, secretkey, …)")
	cmd.Flags().BoolVar(&o.redirect, "storage-redirect", false, "send blob GETs straight to the storage with presigned URLs (s3); clients must reach the storage")
	cmd.Flags().BoolVar(&o.pullSecrets, "serviceaccount-pull-secrets", true, "give every service account a <sa>-dockercfg pull secret for the integrated registry; false removes those written before (for kubelets that pull with pullgate credential-provider)")
	cmd.Flags().BoolVar(&o.controllers, "controllers", true, "take part in the election for pullgate's controllers (Lease pullgate-system/pullgate-controllers) and run them while leading")
	cmd.Flags().StringVar(&o.tlsCert, "tls-cert-file", "", "serve HTTPS with this certificate (required unless --listen is a loopback address)")
	cmd.Flags().StringVar(&o.tlsKey, "tls-key-file", "", "key of --tls-cert-file")
	cmd.Flags().StringVar(&o.blobTransfer, "blob-transfer", string(registry.TransferBuffered), "how filesystem blob GETs are copied: buffered or sendfile")
	cmd.Flags().BoolVar(&o.standalone, "standalone", false, "a registry with no Kubernetes behind it: users from --htpasswd, or tokens from a separate token server (--token-realm)")
	cmd.Flags().StringVar(&o.htpasswd, "htpasswd", "", "--standalone: Basic auth against this htpasswd file (bcrypt)")
	cmd.Flags().StringVar(&o.tokenRealm, "token-realm", "", "--standalone: token auth; URL of the token server's endpoint (e.g. https://sso.example.com/token)")
	cmd.Flags().StringVar(&o.tokenService, "token-service", "", "--standalone: the service name tokens are issued for")
	cmd.Flags().StringVar(&o.tokenIssuer, "token-issuer", "", "--standalone: the issuer tokens must name")
	cmd.Flags().StringVar(&o.tokenJWKS, "token-jwks", "", "--standalone: the token server's keys (its jwks.json)")
	cmd.Flags().StringVar(&o.reserve, "storage-reserve", "1GiB", "filesystem storage: free space kept on the disk; a push that would leave less is refused with 507 (0: none)")
	cmd.Flags().DurationVar(&o.pruneInterval, "prune-interval", 0, "prune the storage this often, as pullgate adm prune --confirm does (0: never; replicas take turns on a Lease)")
	cmd.Flags().DurationVar(&o.pruneKeep, "prune-keep-younger-than", time.Hour, "what --prune-interval's prunes keep for its age, as pullgate adm prune --keep-younger-than")
	cmd.Flags().StringVar(&o.lookupListen, "image-lookup-listen", "", "serve the image lookup webhook (oc set image-lookup, image-change triggers at admission) over TLS with --tls-cert-file on this address, at "+imagelookup.DeployPath+"; empty: not served")
	cmd.Flags().StringVar(&o.lookupClientCA, "image-lookup-client-ca", "", "answer the webhook only to clients with a certificate of this CA named --image-lookup-caller (the client certificate your API server presents to webhooks); empty: anyone who reaches it")
	cmd.Flags().StringVar(&o.lookupCaller, "image-lookup-caller", "", "the common name --image-lookup-client-ca's client certificate must have")
	cmd.Flags().DurationVar(&o.reconcileInterval, "reconcile-interval", services.DefaultReconcileInterval, "how often ImageStreams are repaired to show exactly what storage holds (also at start)")
	cmd.Flags().DurationVar(&o.drain, "drain-timeout", services.DefaultDrainTimeout, "on SIGTERM, how long transfers in flight may take to finish; a second signal exits at once")
	cmd.Flags().DurationVar(&o.grace, "readiness-grace", 0, "on SIGTERM, how long /healthz says 503 while new requests are still served, before draining (for a load balancer to notice)")
	return cmd
}

func (o *registryServeOptions) storageConfig() (configuration.Storage, error) {
	params := configuration.Parameters{}
	if o.paramDir != "" {
		if err := readParamDir(o.paramDir, params); err != nil {
			return nil, err
		}
	}
	for _, kv := range o.storageParams {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--storage-param %q: want key=value", kv)
		}
		params[k] = v
	}
	if o.storage == "filesystem" {
		if _, ok := params["rootdirectory"]; !ok {
			params["rootdirectory"] = filepath.Join(o.dataDir, "registry", "storage")
		}
	}
	if err := validBlobTransfer(o.blobTransfer); err != nil {
		return nil, err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if o.lookupListen != "" && o.tlsCert == "" {
		return nil, errors.New("--image-lookup-listen: the API server calls webhooks over TLS only; give --tls-cert-file and --tls-key-file")
	}
	if (o.lookupClientCA == "") != (o.lookupCaller == "") {
		return nil, errors.New("--image-lookup-client-ca and --image-lookup-caller go together")
	}
	if _, err := parseSize("--storage-reserve", o.reserve); err != nil {
		return nil, err
	}
	return configuration.Storage{o.storage: params}, nil
}

func (o *registryServeOptions) Run(ctx context.Context, storage configuration.Storage) error {
	dir, err := datadir.Open(o.dataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	if o.standalone {
		return o.serveStandalone(ctx, dir.Path, storage)
	}
	restConfig, err := o.kube.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	listener, err := o.listener()
	if err != nil {
		return err
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	reserve, _ := parseSize("--storage-reserve", o.reserve)
	running, err := services.Start(ctx, services.Config{
		KubeConfig: restConfig, DataDir: dir.Path, Storage: storage, RegistryHost: o.host, Scheme: scheme,
		Redirect: o.redirect, NoControllers: !o.controllers, NoPullSecrets: !o.pullSecrets,
		BlobTransfer:   registry.BlobTransfer(o.blobTransfer),
		StorageReserve: reserve,
		DrainTimeout:   o.drain, ReadinessGrace: o.grace,
		PruneInterval: o.pruneInterval, PruneKeepYoungerThan: o.pruneKeep, ReconcileInterval: o.reconcileInterval,
		Log: o.logger(),
	}, listener)
	if err != nil {
		return err
	}
	if o.lookupListen != "" {
		lookup, err := o.lookupListener()
		if err != nil {
			running.Stop()
			return err
		}
		serveImageLookup(ctx, lookup, running, o.lookupCaller, o.logger())
		fmt.Fprintf(o.out, "image lookup webhook on %s%s\n", lookup.Addr(), imagelookup.DeployPath)
	}
	fmt.Fprintf(o.out, "registry is serving on %s\n", listener.Addr())
	<-ctx.Done()
	running.Stop()
	return nil
}

// readParamDir reads one storage parameter per regular file of dir: the file's name
// is the key, its content (without a trailing newline) the value. Kubernetes' ..data
// links and hidden files are skipped.
func readParamDir(dir string, params configuration.Parameters) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--storage-param-dir: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("--storage-param-dir: %w", err)
		}
		params[e.Name()] = strings.TrimRight(string(data), "\r\n")
	}
	return nil
}

// listener binds --listen, with TLS when a certificate is given.
func (o *registryServeOptions) listener() (net.Listener, error) {
	listener, err := listen.TCP(o.listen, "--listen")
	if err != nil || o.tlsCert == "" {
		return listener, err
	}
	return withTLS(listener, o.tlsCert, o.tlsKey)
}

// lookupListener binds --image-lookup-listen with TLS, requiring the caller's
// client certificate when --image-lookup-client-ca is given.
func (o *registryServeOptions) lookupListener() (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", o.tlsCert, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.lookupClientCA != "" {
		pem, err := os.ReadFile(o.lookupClientCA)
		if err != nil {
			return nil, fmt.Errorf("--image-lookup-client-ca: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--image-lookup-client-ca %s: no PEM certificate in it", o.lookupClientCA)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	l, err := listen.TCP(o.lookupListen, "--image-lookup-listen")
	if err != nil {
		return nil, err
	}
	return tls.NewListener(l, cfg), nil
}

// serveStandalone serves a registry with no Kubernetes behind it.
func (o *registryServeOptions) serveStandalone(ctx context.Context, dir string, storage configuration.Storage) error {
	secret, err := services.HTTPSecret(filepath.Join(dir, "http-secret"))
	if err != nil {
		return err
	}
	handler, err := registry.NewStandalone(ctx, registry.StandaloneConfig{
		Storage: storage, HTTPSecret: secret, Htpasswd: o.htpasswd,
		TokenRealm: o.tokenRealm, TokenService: o.tokenService, TokenIssuer: o.tokenIssuer, TokenJWKS: o.tokenJWKS,
		Log: o.logger(),
	})
	if err != nil {
		return err
	}
	listener, err := o.listener()
	if err != nil {
		return err
	}
	defer listener.Close()
	return serveUntilDone(ctx, o.out, "registry is serving on "+listener.Addr().String(), handler, listener, o.drain)
}

// serveUntilDone serves handler on listener, prints ready on out, and stops when ctx ends.
func serveUntilDone(ctx context.Context, out io.Writer, ready string, handler http.Handler, listener net.Listener, drain time.Duration) error {
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 1)
	go func() { errc <- server.Serve(listener) }()
	fmt.Fprintln(out, ready)
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		return server.Shutdown(shutdown)
	case err := <-errc:
		return err
	}
}

// withTLS serves listener over TLS with the given certificate; on error it closes it.
func withTLS(listener net.Listener, certFile, keyFile string) (net.Listener, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		listener.Close()
		return nil, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	return tls.NewListener(listener, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), nil
}
