// Package services runs pullgate's own parts against a Kubernetes API — the
// ImageStream API, the registry's roles and role-binding controller, the token service
// and the integrated registry — whether that API is `pullgate up`'s embedded one or a
// real cluster's.
package services

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/controller/leader"
	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/registry"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/keys"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/internal/registry/tokenserver"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Config is what Start runs.
type Config struct {
	// KubeConfig reaches the Kubernetes API as the registry (Registry()).
	KubeConfig *rest.Config
	// TokenReviewConfig is the token service's identity (TokenService()), and
	// ControllersConfig the controllers' (Controllers()); unset, KubeConfig's.
	TokenReviewConfig, ControllersConfig *rest.Config
	// PullThroughCredentials, when set, are a project's credentials for an image
	// another registry holds: the registry then serves the images streams imported
	// with reference policy Local, reading them there with these (up: the project's
	// pull secrets, read by up's administrator — the registry's own identity reads no
	// secret). PullThroughTransport reaches those registries.
	PullThroughCredentials func(ctx context.Context, namespace, image string) (credentials.Candidates, error)
	PullThroughTransport   http.RoundTripper
	// DataDir holds the registry's filesystem storage and the public keys it verifies
	// tokens with (the keys themselves are shared by every replica in a Secret,
	// keys).
	DataDir string
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
	// StorageReserve is the free space a filesystem store keeps (0: the default).
	StorageReserve int64
	// DrainTimeout is how long Stop lets requests in flight finish (default
	// DefaultDrainTimeout); ReadinessGrace how long before that /healthz says 503
	// while new requests are still served, so a load balancer can look elsewhere.
	DrainTimeout, ReadinessGrace time.Duration
	// PruneInterval, when set, prunes the storage that often (pullgate adm prune
	// --confirm, in process), keeping what is younger than PruneKeepYoungerThan.
	PruneInterval, PruneKeepYoungerThan time.Duration
	// ReconcileInterval is how often storage and ImageStreams are compared and
	// repaired (default 10 minutes).
	ReconcileInterval time.Duration
	// Redirect sends blob GETs straight to the storage (S3 presigned URLs).
	Redirect bool
	// Identity names this replica in the controllers' leader election (default: host
	// name and a random ID).
	Identity string
	// NoControllers leaves the controllers to other processes (`pullgate
	// controllers`): this one serves the registry and token service only.
	NoControllers bool
	// NoPullSecrets stops the controllers writing service accounts' registry pull
	// secrets, and removes those written before.
	NoPullSecrets bool
	Log           *slog.Logger
}

// Running is the started services.
type Running struct {
	// RegistryHost is the host:port clients pull from.
	RegistryHost string
	// Metrics is the registry served at /metrics, for other parts of the process.
	Metrics prometheus.Registerer
	// Authz decides RBAC from the services' informers, for other parts of the process.
	Authz tokenauth.Authorizer
	// Streams is the ImageStream index, for other parts of the process.
	Streams      *imageapi.Index
	server       *http.Server
	registry     *registry.Registry
	cancel       context.CancelFunc
	done         chan struct{}
	drain, grace time.Duration
	log          *slog.Logger
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

// start assembles the parts: the cluster's informers, the controllers, the token
// service and the registry, then serves.
func start(ctx context.Context, cfg Config, listener net.Listener) (_ *Running, err error) {
	c, err := connect(cfg.KubeConfig)
	if err != nil {
		return nil, err
	}
	if err := imageapi.WaitForCRD(ctx, c.rest); err != nil {
		return nil, err
	}
	reviewer, err := kubernetes.NewForConfig(WithRateLimits(cmp.Or(cfg.TokenReviewConfig, cfg.KubeConfig)))
	if err != nil {
		return nil, err
	}
	controllers, err := newControllerClients(cmp.Or(cfg.ControllersConfig, cfg.KubeConfig))
	if err != nil {
		return nil, err
	}
	host, names := cfg.registryNames(listener.Addr())
	shared, err := keys.Load(ctx, c.client, cfg.Log)
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	if err := c.start(ctx, runCtx); err != nil {
		return nil, err
	}
	if err := location.Publish(ctx, c.client, location.Info{URL: cmp.Or(cfg.Scheme, "http") + "://" + host, Hostnames: names}); err != nil {
		return nil, err
	}

	regDir := filepath.Join(cfg.DataDir, "registry")
	if err := os.MkdirAll(regDir, 0o700); err != nil {
		return nil, fmt.Errorf("registry directory %s: %w", regDir, err)
	}
	jwksFile := filepath.Join(regDir, "jwks.json")
	if err := atomicfile.Replace(jwksFile, shared.Current().JWKS(time.Now()), 0o644); err != nil {
		return nil, err
	}
	metrics := newMetrics()
	// A replica that leaves the controllers to others takes no part in their
	// election, and says nothing of it.
	var elector *leader.Elector
	if !cfg.NoControllers {
		elector = leader.New(leader.Config{Client: controllers.kube, Namespace: keys.Namespace, Name: leader.ControllersLease,
			Identity: cfg.Identity, Metrics: metrics, Log: cfg.Log})
	}
	store := cfg.storage(regDir)
	reg, err := registry.New(ctx, registry.Config{
		Host:    host,
		Storage: store,
		Service: tokenauth.Service, Issuer: tokenauth.Issuer, JWKSFile: jwksFile,
		HTTPSecret:      shared.Current().HTTPSecret,
		TokenHandler:    newTokenService(reviewer, c.authz, shared, metrics, cfg.Log),
		Streams:         c.streamsAPI(),
		PullThrough:     cfg.pullThrough(c.streams),
		Authz:           c.authz,
		NamespaceExists: c.namespaceExists,
		Metrics:         metrics,
		Gatherer:        metrics,
		BlobTransfer:    cfg.BlobTransfer,
		StorageReserve:  cfg.StorageReserve,
		Redirect:        cfg.Redirect,
		PruneLock:       pruneLock(c.client, cfg.Identity),
		Health:          healthChecks(elector),
		Log:             cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	go shared.Run(runCtx, func(set *keys.Set) {
		if err := reg.SetVerifyingKeys(set.JWKS(time.Now())); err != nil {
			cfg.Log.Error("registry keys changed but could not be used; tokens signed with a new key are refused", "err", err)
		}
	})
	if elector != nil {
		go func() {
			_ = elector.Run(runCtx, func(term context.Context) { runControllers(term, controllers, names, cfg.NoPullSecrets, cfg.Log) })
		}()
	}
	if err := c.streams.OnDelete(func(repository, uid string) {
		go reg.StreamDeleted(runCtx, repository, uid)
	}); err != nil {
		return nil, err
	}
	go maintain(runCtx, reg, cfg)
	running := &Running{RegistryHost: host, Metrics: metrics, Authz: c.authz, Streams: c.streams, server: newServer(reg), registry: reg, cancel: cancel, done: make(chan struct{}),
		drain: cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout), grace: cfg.ReadinessGrace, log: cfg.Log}
	go func() {
		defer close(running.done)
		if err := running.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("registry server stopped", "err", err)
		}
	}()
	cfg.Log.Info("registry serving", "host", host, "listen", listener.Addr().String(), "storage", store.Type())
	return running, nil
}

// pruneLock is the Lease prunes of the registry's storage take, in pullgate's namespace.
// registryNames are the host clients use (given, or localhost and the listener's
// port) and every name the registry answers to (given, or the host).
func (c Config) registryNames(addr net.Addr) (host string, names []string) {
	host = c.RegistryHost
	if host == "" {
		_, port, _ := net.SplitHostPort(addr.String())
		host = "localhost:" + port
	}
	names = c.RegistryNames
	if len(names) == 0 {
		names = []string{host}
	}
	return host, names
}

// storage is where blobs are kept: as configured, or the filesystem under regDir.
func (c Config) storage(regDir string) configuration.Storage {
	if len(c.Storage) > 0 {
		return c.Storage
	}
	return configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": filepath.Join(regDir, "storage")}}
}

// maintained is what maintain keeps in shape: *registry.Registry.
type maintained interface {
	Reconcile(ctx context.Context) error
	Prune(ctx context.Context, opts registry.PruneOptions) (registry.PruneReport, error)
}

// maintain reconciles storage and ImageStreams at start and every
// ReconcileInterval, whatever a crash left between them, and, with a
// PruneInterval, prunes that often, until ctx ends.
func maintain(ctx context.Context, reg maintained, cfg Config) {
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := reg.Reconcile(ctx); err != nil && ctx.Err() == nil {
			cfg.Log.Warn("reconciling storage and imagestreams", "err", err)
		}
	}, cfg.reconcileInterval())
	if cfg.PruneInterval > 0 {
		wait.UntilWithContext(ctx, func(ctx context.Context) { pruneOnce(ctx, reg, cfg) }, cfg.PruneInterval)
	}
}

// pruneOnce prunes, and logs what happened: another prune holding the storage is no
// failure.
func pruneOnce(ctx context.Context, reg maintained, cfg Config) {
	rep, err := reg.Prune(ctx, registry.PruneOptions{Confirm: true, KeepYoungerThan: cfg.PruneKeepYoungerThan})
	switch {
	case errors.Is(err, leader.ErrHeld):
		cfg.Log.Info("prune skipped: another prune of this storage is running", "err", err)
	case err != nil && ctx.Err() == nil:
		cfg.Log.Warn("prune failed", "err", err)
	case err == nil:
		cfg.Log.Info("pruned", "report", rep.String())
	}
}

func pruneLock(client kubernetes.Interface, identity string) leader.Lock {
	return leader.Lock{Client: client, Namespace: keys.Namespace, Name: leader.PruneLease, Identity: identity}
}

// DefaultReconcileInterval is how often storage and ImageStreams are compared.
const DefaultReconcileInterval = 10 * time.Minute

func (c Config) reconcileInterval() time.Duration {
	if c.ReconcileInterval > 0 {
		return c.ReconcileInterval
	}
	return DefaultReconcileInterval
}

// newTokenService is the token service: TokenReviews with a 10 s cache, RBAC from
// the cluster's informers, failed logins limited per address.
func newTokenService(reviewer kubernetes.Interface, authz tokenauth.Authorizer, signer tokenserver.TokenSigner, metrics prometheus.Registerer, log *slog.Logger) *tokenserver.Server {
	return &tokenserver.Server{
		Issuer: tokenauth.Issuer, Service: tokenauth.Service, Lifetime: tokenauth.MaxLifetime, Signer: signer,
		Authn:   tokenserver.NewTokenReviewer(reviewer, 10*time.Second, tokenauth.Service, metrics),
		Authz:   authz,
		Limiter: &tokenserver.FailureLimiter{},
		Log:     log.With("component", "token-service"),
		Metrics: tokenserver.NewMetrics(metrics),
	}
}

// newServer serves handler with timeouts that close idle and stalled connections
// but never cut a transfer that is making progress: headers must arrive within 30
// s, an idle keep-alive connection is closed after 2 minutes, and request bodies are
// watched by the registry itself (registry.DefaultBodyIdleTimeout).
func newServer(handler http.Handler) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// DefaultDrainTimeout is how long Stop lets transfers in flight finish.
const DefaultDrainTimeout = 30 * time.Second

// Stop shuts the registry down gracefully: /healthz says 503 (for ReadinessGrace new
// requests are still served), then no new connection is taken and the requests in
// flight — a slow blob download, say — may finish, for at most DrainTimeout.
func (r *Running) Stop() {
	r.registry.Drain()
	if r.grace > 0 {
		time.Sleep(r.grace)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.drain)
	defer cancel()
	begin := time.Now()
	if err := r.server.Shutdown(ctx); err != nil {
		r.log.Warn("requests still in flight after the drain timeout were cut", "drain-timeout", r.drain)
		_ = r.server.Close()
	} else if took := time.Since(begin); took > time.Second {
		r.log.Info("requests in flight finished", "took", took.Round(time.Millisecond))
	}
	_ = r.registry.Shutdown()
	r.cancel()
	<-r.done
}

// pullThrough is the registry's pull-through, when the configuration gives it
// credentials.
func (cfg Config) pullThrough(streams *imageapi.Index) registry.PullThrough {
	if cfg.PullThroughCredentials == nil {
		return nil
	}
	return &images.PullThrough{Streams: streams, Credentials: cfg.PullThroughCredentials, Transport: cfg.PullThroughTransport}
}
