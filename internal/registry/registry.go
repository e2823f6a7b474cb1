// Package registry is pullgate's integrated OCI registry: distribution's registry
// (handlers.NewApp) with repositories named <namespace>/<name>, access decided by
// registry tokens that the token service grants from Kubernetes RBAC, every manifest
// push recorded in an ImageStream, and a catalog that lists only what the caller may
// pull. Any distribution storage driver can hold the blobs (filesystem by default,
// s3 for a real cluster).
package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage drivers register themselves
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/platform/healthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// Config is what the registry is built from.
type Config struct {
	// Host is the host:port clients reach the registry at; ImageStreams record it.
	Host string
	// Storage is the distribution storage driver and its parameters, e.g.
	// {"filesystem": {"rootdirectory": "/var/lib/pullgate/registry"}}.
	Storage configuration.Storage
	// Service, Issuer and JWKSFile describe the tokens the registry accepts.
	Service, Issuer, JWKSFile string
	// Realm is the token endpoint's URL; a path alone (default "/token") is this
	// server's, completed with each request's scheme and host.
	Realm string
	// HTTPSecret signs upload state.
	HTTPSecret string
	// TokenHandler serves /token in the same server (pullgate up); nil when the token
	// service runs elsewhere.
	TokenHandler http.Handler
	// Streams ties repositories to their ImageStreams: a repository is served only
	// while its ImageStream exists, and a push makes it.
	Streams Streams
	// PullThrough, when set, serves the images streams imported with reference
	// policy Local (needs Streams).
	PullThrough PullThrough
	// Authz re-decides every request's access from RBAC, so a removed grant bites at
	// the next request rather than when the token expires.
	Authz tokenauth.Authorizer
	// NamespaceExists answers from an informer whether a namespace exists.
	NamespaceExists func(string) bool
	// BodyIdleTimeout cuts a request whose body stalls this long (default
	// DefaultBodyIdleTimeout).
	BodyIdleTimeout time.Duration
	// StorageReserve is the free space a filesystem store keeps: a push that would
	// leave less is refused (default DefaultStorageReserve; negative: none).
	StorageReserve int64
	Metrics        prometheus.Registerer
	Gatherer       prometheus.Gatherer
	// BlobTransfer chooses sendfile or buffered copies for filesystem blob GETs
	// (default buffered).
	BlobTransfer BlobTransfer
	// Redirect sends blob GETs to the storage itself (a presigned S3 URL, say) where
	// the driver can make one; by default the registry serves every byte.
	Redirect bool
	// PruneLock is the lock prunes of this storage take (a Lease): a push that makes
	// a repository's ImageStream waits while a prune may be clearing the repository.
	PruneLock PruneLock
	// Health is more checks /healthz runs besides the registry's own.
	Health []healthz.Check
	Log    *slog.Logger
}

// Registry is the registry's HTTP handler.
type Registry struct {
	http.Handler
	app      *handlers.App
	repos    *repositories
	host     string
	draining atomic.Bool
	prunes   *pruneMetrics
	fsRoot   string // filesystem storage's directory, "" for other storage
	tokens   *tokenVerifier
	jwksFile string
}

// SetVerifyingKeys replaces the keys registry tokens are verified with (a JWKS), for
// every request from now on.
func (r *Registry) SetVerifyingKeys(jwks []byte) error {
	if err := atomicfile.Replace(r.jwksFile, jwks, 0o644); err != nil {
		return err
	}
	return r.tokens.reload()
}

// Drain makes /healthz answer 503, so a load balancer stops sending new requests
// while those in flight finish.
func (r *Registry) Drain() { r.draining.Store(true) }

// New builds the registry. distribution panics on a configuration it cannot use;
// that is turned into an error naming the problem.
func New(ctx context.Context, cfg Config) (reg *Registry, err error) {
	if cfg.Realm == "" {
		cfg.Realm = "/token"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pullgate", Subsystem: "registry", Name: "auth_refusals_total",
		Help: "Registry requests refused by token verification or the per-request RBAC check, by reason: token_required, invalid_token, insufficient_scope, lifetime, revoked.",
	}, []string{"reason"})
	cfg.Metrics.MustRegister(refused)

	tokenOptions := map[string]any{
		"realm": cfg.Realm, "service": cfg.Service, "issuer": cfg.Issuer, "jwks": cfg.JWKSFile,
		"signingalgorithms": []any{"ES256", "EdDSA"},
	}
	tokens, err := newTokenVerifier(tokenOptions)
	if err != nil {
		return nil, err
	}
	authParams := configuration.Parameters{accessOptionMetrics: refused, accessOptionAuthz: cfg.Authz, accessOptionVerifier: tokens}
	for k, v := range tokenOptions {
		authParams[k] = v
	}
	dc := distributionConfig(cfg, authParams)
	driver, err := factory.Create(ctx, dc.Storage.Type(), dc.Storage.Parameters())
	if err != nil {
		return nil, fmt.Errorf("registry storage %s: %w", dc.Storage.Type(), err)
	}
	catalogRegistry, err := storage.NewRegistry(ctx, driver)
	if err != nil {
		return nil, err
	}
	// Writes are pinned against prunes, and whatever a prune set aside comes back to
	// whoever reaches it; with ImageStreams, every tag written or deleted is recorded
	// in its stream.
	middleware := []configuration.Middleware{{Name: pruneGuardMiddleware, Options: configuration.Parameters{
		pruneGuardOptionStore: driver, pruneGuardOptionLog: cfg.Log,
	}}}
	var repos *repositories
	if cfg.Streams != nil {
		repos = newRepositories(cfg.Streams, driver, catalogRegistry, cfg.Log)
		repos.pruneLock = cfg.PruneLock
		middleware = append(middleware, configuration.Middleware{Name: streamsMiddleware, Options: configuration.Parameters{
			streamsOptionRepos: repos, streamsOptionHost: cfg.Host,
		}})
		// Outermost: what it stores goes through the streams' and the prunes' guards.
		if cfg.PullThrough != nil {
			middleware = append(middleware, configuration.Middleware{Name: pullThroughMiddleware, Options: configuration.Parameters{pullThroughOption: cfg.PullThrough}})
		}
	}
	dc.Middleware = map[string][]configuration.Middleware{"repository": middleware}

	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("registry configuration: %v", r)
		}
	}()
	app := handlers.NewApp(ctx, dc)
	verifier, err := auth.GetAccessController(AccessControllerName, dc.Auth.Parameters())
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	if cfg.TokenHandler != nil {
		mux.Handle("/token", cfg.TokenHandler)
	}
	reg = &Registry{tokens: tokens, jwksFile: cfg.JWKSFile, host: cfg.Host, prunes: newPruneMetrics(cfg.Metrics), fsRoot: filesystemRoot(dc.Storage)}
	mux.Handle("/healthz", healthz.Handler(append([]healthz.Check{{Name: "registry", Check: func(*http.Request) error {
		if reg.draining.Load() {
			return errors.New("draining: this registry is stopping")
		}
		return nil
	}}}, cfg.Health...)...))
	if cfg.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.Handle("/v2/_catalog", &catalog{
		verifier: verifier, enumerator: catalogRegistry.(distribution.RepositoryEnumerator), authz: cfg.Authz, repos: repos,
	})
	blobs, writes, err := cfg.filesystemServing(dc.Storage, app, verifier)
	if err != nil {
		return nil, err
	}
	refs := &referrers{next: blobs, driver: driver, verifier: verifier, log: cfg.Log}
	if repos != nil {
		refs.record = repos.recordReferrer
	}
	pinned := &pinnedWrites{next: refs, fence: fence{driver}, verifier: verifier, log: cfg.Log}
	mux.Handle("/v2/", writes(explainDenied{authz: cfg.Authz, next: &repositoryGate{
		next:     pinned,
		verifier: verifier, repos: repos, host: cfg.Host, namespaceExists: cfg.NamespaceExists, log: cfg.Log,
	}}))
	reg.Handler = bodyLimits{next: instrument(cfg.Metrics, storageErrors{next: mux, log: cfg.Log}), idle: cmp.Or(max(cfg.BodyIdleTimeout, 0), DefaultBodyIdleTimeout)}
	reg.app, reg.repos = app, repos
	return reg, nil
}

// distributionConfig is distribution's configuration for cfg: its storage with
// deletes on (a prune deletes) and redirects only when asked (clients need not
// reach the storage), pullgate's access controller, no access log.
func distributionConfig(cfg Config, access configuration.Parameters) *configuration.Configuration {
	dc := &configuration.Configuration{
		Storage: maps.Clone(cfg.Storage),
		Auth:    configuration.Auth{AccessControllerName: access},
	}
	dc.HTTP.Secret = cfg.HTTPSecret
	dc.Log.AccessLog.Disabled = true
	dc.Log.Level = "warn"
	dc.Catalog.MaxEntries = 1000
	// Non-distributable layers name where they live; a registry only checks the URL.
	dc.Validation.Manifests.URLs.Allow = []string{"^https?://"}
	if _, ok := dc.Storage["delete"]; !ok {
		dc.Storage["delete"] = configuration.Parameters{"enabled": true}
	}
	// distribution redirects by default wherever its driver can; pullgate only when
	// asked, so clients need not reach the storage.
	dc.Storage["redirect"] = configuration.Parameters{"disable": !cfg.Redirect}
	return dc
}

// filesystemServing is how a filesystem store is served beside distribution: blob
// GETs straight from the files (sendfile or buffered), and writes refused while
// less than the reserve is free. Any other store is served by distribution alone.
func (cfg Config) filesystemServing(store configuration.Storage, app http.Handler, verifier auth.AccessController) (http.Handler, func(http.Handler) http.Handler, error) {
	unchanged := func(h http.Handler) http.Handler { return h }
	root := filesystemRoot(store)
	if root == "" {
		return app, unchanged, nil
	}
	transfer := cmp.Or(cfg.BlobTransfer, TransferBuffered)
	served := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pullgate", Subsystem: "registry", Name: "filesystem_blob_gets_total",
		Help: "Blob GETs served straight from the filesystem rather than through distribution, by transfer (sendfile or buffered).",
	}, []string{"transfer"})
	cfg.Metrics.MustRegister(served)
	blobs := &sendfileBlobs{next: app, root: root, verifier: verifier, served: served.WithLabelValues(string(transfer)), transfer: transfer}
	reserve := cmp.Or(cfg.StorageReserve, DefaultStorageReserve)
	if reserve < 0 {
		return blobs, unchanged, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, nil, fmt.Errorf("registry storage %s: %w", root, err)
	}
	pending := &pendingBytes{}
	return blobs, func(h http.Handler) http.Handler {
		return diskSpace{next: h, root: root, reserve: reserve, pending: pending}
	}, nil
}

// StreamDeleted clears the repository (namespace/path) of an ImageStream that was
// deleted.
func (r *Registry) StreamDeleted(ctx context.Context, repository, uid string) {
	if r.repos != nil {
		r.repos.Deleted(ctx, repository, uid)
	}
}

// Reconcile clears the repositories of ImageStreams deleted while no registry ran,
// and makes every ImageStream show exactly the tags storage holds.
func (r *Registry) Reconcile(ctx context.Context) error {
	if r.repos == nil {
		return nil
	}
	if err := r.repos.Reconcile(ctx); err != nil {
		return err
	}
	_, err := r.repos.ReconcileTags(ctx, r.host)
	return err
}

// Shutdown stops the registry's background work.
func (r *Registry) Shutdown() error { return r.app.Shutdown() }

func pullAccess(name string) auth.Access {
	return auth.Access{Resource: auth.Resource{Type: "repository", Name: name}, Action: "pull"}
}
