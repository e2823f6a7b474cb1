// Package services runs pullgate's own parts against a Kubernetes API — the
// ImageStream API, the registry's roles and role-binding controller, the token service
// and the integrated registry — whether that API is `pullgate up`'s embedded one or a
// real cluster's.
package services

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"pullgate.dev/pullgate/internal/atomicfile"
	"pullgate.dev/pullgate/internal/cli"
	"pullgate.dev/pullgate/internal/imageapi"
	"pullgate.dev/pullgate/internal/pki"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry"
	"pullgate.dev/pullgate/internal/registryauth"
	"pullgate.dev/pullgate/internal/registryroles"
	"pullgate.dev/pullgate/internal/tokenserver"
)

// Config is what Start runs.
type Config struct {
	// KubeConfig reaches the Kubernetes API with the rights pullgate needs.
	KubeConfig *rest.Config
	// DataDir holds the registry's storage, its token key and HTTP secret.
	DataDir string
	// PKI holds the token signing key.
	PKI *pki.Dir
	// Storage is distribution's storage configuration; empty means the filesystem
	// under DataDir/registry/storage.
	Storage configuration.Storage
	// RegistryHost is the host:port clients use, recorded in ImageStreams; empty means
	// localhost:<listening port>.
	RegistryHost string
	// Scheme is how clients reach the registry: http (default) or https.
	Scheme string
	// RegistryNames are every host[:port] the registry answers to, written in the
	// service accounts' pull secrets; empty means RegistryHost.
	RegistryNames []string
	// BlobTransfer is registry.TransferBuffered (default) or TransferSendfile.
	BlobTransfer registry.BlobTransfer
	Verbose      bool
	Log          *slog.Logger
}

// Running is the started services.
type Running struct {
	// RegistryHost is the host:port clients pull from.
	RegistryHost string
	// Metrics is the registry served at /metrics, for other parts of the process.
	Metrics prometheus.Registerer
	// Authz decides RBAC from the services' informers, for other parts of the process.
	Authz    registryauth.Authorizer
	server   *http.Server
	registry *registry.Registry
	cancel   context.CancelFunc
	done     chan struct{}
}

// Listen binds the registry's address, so that a port in use is reported before
// anything else starts.
func Listen(address, flag string) (net.Listener, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		var sys *os.SyscallError
		if errors.As(err, &sys) {
			err = sys.Err
		}
		return nil, fmt.Errorf("registry address %s is not available (%v): stop what holds it or choose another with %s", address, err, flag)
	}
	return l, nil
}

// Start installs what the registry needs in the cluster (idempotently), then serves
// the registry and token service on listener, which it closes on failure.
func Start(ctx context.Context, cfg Config, listener net.Listener) (*Running, error) {
	r, err := start(ctx, cfg, listener)
	if err != nil {
		listener.Close()
		return nil, err
	}
	return r, nil
}

func start(ctx context.Context, cfg Config, listener net.Listener) (*Running, error) {
	cfg.KubeConfig = withRateLimits(cfg.KubeConfig)
	client, err := kubernetes.NewForConfig(cfg.KubeConfig)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg.KubeConfig)
	if err != nil {
		return nil, err
	}
	if err := imageapi.EnsureCRD(ctx, cfg.KubeConfig); err != nil {
		return nil, err
	}
	if err := registryroles.EnsureClusterRoles(ctx, client); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactory(client, 0)
	authz, err := rbacauthz.New(factory)
	if err != nil {
		cancel()
		return nil, err
	}
	// The bindings controller creates these in every namespace; until it has, they
	// count as if it had (no refused pull for a pod created with its namespace).
	authz.Defaults = registryroles.RoleBindings
	host := cfg.RegistryHost
	if host == "" {
		_, port, _ := net.SplitHostPort(listener.Addr().String())
		host = "localhost:" + port
	}
	names := cfg.RegistryNames
	if len(names) == 0 {
		names = []string{host}
	}
	ctrls, err := newControllers(client, factory, names, cfg.Log)
	if err != nil {
		cancel()
		return nil, err
	}
	namespaces := factory.Core().V1().Namespaces()
	nsInformer := namespaces.Informer()
	streamIndex := imageapi.NewIndex(dyn)
	factory.Start(runCtx.Done())
	go streamIndex.Run(runCtx)
	if !authz.WaitForSync(ctx) || !cache.WaitForCacheSync(ctx.Done(), nsInformer.HasSynced) {
		cancel()
		return nil, fmt.Errorf("informers did not sync: %w", context.Cause(ctx))
	}
	if err := streamIndex.WaitForSync(ctx); err != nil {
		cancel()
		return nil, err
	}
	ctrls.run(runCtx)
	if err := publishRegistryInfo(ctx, client, cfg.Scheme, host, names); err != nil {
		cancel()
		return nil, err
	}

	key, err := cfg.PKI.SigningKey("registry-token")
	if err != nil {
		cancel()
		return nil, err
	}
	signer, err := tokenserver.NewSigner(key)
	if err != nil {
		cancel()
		return nil, err
	}
	regDir := filepath.Join(cfg.DataDir, "registry")
	if err := os.MkdirAll(regDir, 0o700); err != nil {
		cancel()
		return nil, fmt.Errorf("registry directory %s: %w", regDir, err)
	}
	jwksFile := filepath.Join(regDir, "jwks.json")
	if err := atomicfile.Replace(jwksFile, signer.JWKS(), 0o644); err != nil {
		cancel()
		return nil, err
	}
	secret, err := HTTPSecret(filepath.Join(regDir, "http-secret"))
	if err != nil {
		cancel()
		return nil, err
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	store := cfg.Storage
	if len(store) == 0 {
		store = configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": filepath.Join(regDir, "storage")}}
	}
	tokens := &tokenserver.Server{
		Issuer: registryauth.Issuer, Service: registryauth.Service, Lifetime: registryauth.MaxLifetime, Signer: signer,
		Authn:   tokenserver.NewTokenReviewer(client, 10*time.Second, registryauth.Service, metrics),
		Authz:   authz,
		Limiter: &tokenserver.FailureLimiter{},
		Log:     cfg.Log.With("component", "token-service"),
		Metrics: tokenserver.NewMetrics(metrics),
	}
	reg, err := registry.New(ctx, registry.Config{
		Host:    host,
		Storage: store,
		Service: registryauth.Service, Issuer: registryauth.Issuer, JWKSFile: jwksFile,
		HTTPSecret:   secret,
		TokenHandler: tokens,
		Streams:      streams{Streams: imageapi.Streams{Client: dyn}, Index: streamIndex},
		Authz:        authz,
		NamespaceExists: func(ns string) bool {
			_, err := namespaces.Lister().Get(ns)
			return err == nil
		},
		Metrics:      metrics,
		Gatherer:     metrics,
		BlobTransfer: cfg.BlobTransfer,
		Verbose:      cfg.Verbose,
		Log:          cfg.Log,
	})
	if err != nil {
		cancel()
		return nil, err
	}
	if err := streamIndex.OnDelete(func(namespace, name, uid string) {
		go reg.StreamDeleted(runCtx, namespace, name, uid)
	}); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		if err := reg.Reconcile(runCtx); err != nil && runCtx.Err() == nil {
			cfg.Log.Warn("clearing the repositories of deleted imagestreams", "err", err)
		}
	}()
	server := newServer(reg)
	running := &Running{RegistryHost: host, Metrics: metrics, Authz: authz, server: server, registry: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(running.done)
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("registry server stopped", "err", err)
		}
	}()
	cfg.Log.Info("registry serving", "host", host, "listen", listener.Addr().String(), "storage", store.Type())
	return running, nil
}

// streams is the ImageStream API as the registry uses it: reads from the index,
// writes through the API.
type streams struct {
	imageapi.Streams
	*imageapi.Index
}

// newServer serves handler with timeouts that close idle and stalled connections
// but never cut a transfer that is making progress: headers must arrive within 30
// s, an idle keep-alive connection is closed after 2 minutes, and request bodies are
// watched by the registry itself (registry.DefaultBodyIdleTimeout).
func newServer(handler http.Handler) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// Stop shuts the registry down, waiting at most a few seconds for requests in flight.
func (r *Running) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = r.server.Shutdown(ctx)
	_ = r.registry.Shutdown()
	r.cancel()
	<-r.done
}

// HTTPSecret reads, or makes once, the secret distribution signs upload state with,
// so an upload survives a restart.
func HTTPSecret(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		return string(data), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(b)
	if err := atomicfile.Create(path, []byte(secret), 0o600); err != nil {
		return "", err
	}
	return secret, nil
}

// withRateLimits raises client-go's default 5 requests/s, which would take minutes to
// give a burst of new namespaces their service accounts and pull secrets.
func withRateLimits(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	if c.QPS == 0 {
		c.QPS, c.Burst = 1000, 2000
	}
	return c
}

// publishRegistryInfo writes ConfigMap kube-public/pullgate-registry, where clients
// (pullgate registry info, registry login) find the registry's URL and names.
func publishRegistryInfo(ctx context.Context, client kubernetes.Interface, scheme, host string, names []string) error {
	if scheme == "" {
		scheme = "http"
	}
	want := map[string]string{"url": scheme + "://" + host, "hostnames": strings.Join(names, ",")}
	cms := client.CoreV1().ConfigMaps(cli.RegistryInfoNamespace)
	cm, err := cms.Get(ctx, cli.RegistryInfoName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cli.RegistryInfoName}, Data: want}, metav1.CreateOptions{})
	} else if err == nil && !maps.Equal(cm.Data, want) {
		cm.Data = want
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("publishing the registry's names in configmap %s/%s: %w", cli.RegistryInfoNamespace, cli.RegistryInfoName, err)
	}
	return nil
}
