// Package registry is pullgate's integrated OCI registry: distribution's registry
// (handlers.NewApp) with repositories named <namespace>/<name>, access decided by
// registry tokens that the token service grants from Kubernetes RBAC, every manifest
// push recorded in an ImageStream, and a catalog that lists only what the caller may
// pull. Any distribution storage driver can hold the blobs (filesystem by default,
// s3 for a real cluster).
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/distribution/distribution/v3/registry/auth"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // storage drivers register themselves
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"pullgate.dev/pullgate/internal/rbacauthz"
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
	Recorder     TagRecorder
	Authz        Authorizer
	// NamespaceExists answers from an informer whether a namespace exists.
	NamespaceExists func(string) bool
	Metrics         prometheus.Registerer
	Gatherer        prometheus.Gatherer
	// BlobTransfer chooses sendfile or buffered copies for filesystem blob GETs
	// (default buffered).
	BlobTransfer BlobTransfer
	Verbose      bool
	Log          *slog.Logger
}

// Authorizer decides whether a user may pull from a repository.
type Authorizer interface {
	Allowed(user rbacauthz.User, req rbacauthz.Request) (bool, string)
}

// Registry is the registry's HTTP handler.
type Registry struct {
	http.Handler
	app *handlers.App
}

// New builds the registry. distribution panics on a configuration it cannot use;
// that is turned into an error naming the problem.
func New(ctx context.Context, cfg Config) (reg *Registry, err error) {
	if cfg.Realm == "" {
		cfg.Realm = "/token"
	}
	// distribution logs every 4xx as an error; a 404 on a HEAD is how clients ask
	// whether a blob exists. Its per-request log is kept for -v.
	logrus.SetLevel(logrus.FatalLevel)
	if cfg.Verbose {
		logrus.SetLevel(logrus.InfoLevel)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pullgate", Subsystem: "registry", Name: "auth_refusals_total",
		Help: "Registry requests refused by token verification, by reason.",
	}, []string{"reason"})
	cfg.Metrics.MustRegister(refused)

	dc := &configuration.Configuration{
		Storage: cfg.Storage,
		Auth: configuration.Auth{AccessControllerName: configuration.Parameters{
			"realm": cfg.Realm, "service": cfg.Service, "issuer": cfg.Issuer, "jwks": cfg.JWKSFile,
			"signingalgorithms": []any{"ES256", "EdDSA"},
			accessOptionMetrics: refused,
		}},
		Middleware: map[string][]configuration.Middleware{
			"repository": {{Name: streamsMiddleware, Options: configuration.Parameters{
				streamsOptionRecorder: cfg.Recorder, streamsOptionHost: cfg.Host,
			}}},
		},
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

	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("registry configuration: %v", r)
		}
	}()
	app := handlers.NewApp(ctx, dc)

	driver, err := factory.Create(ctx, dc.Storage.Type(), dc.Storage.Parameters())
	if err != nil {
		return nil, fmt.Errorf("registry storage %s: %w", dc.Storage.Type(), err)
	}
	catalogRegistry, err := storage.NewRegistry(ctx, driver)
	if err != nil {
		return nil, err
	}
	verifier, err := auth.GetAccessController(AccessControllerName, dc.Auth.Parameters())
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	if cfg.TokenHandler != nil {
		mux.Handle("/token", cfg.TokenHandler)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	if cfg.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.Handle("/v2/_catalog", &catalog{
		verifier: verifier, repos: catalogRegistry.(distribution.RepositoryEnumerator), authz: cfg.Authz,
	})
	var blobs http.Handler = app
	if dc.Storage.Type() == "filesystem" {
		if root, ok := dc.Storage.Parameters()["rootdirectory"].(string); ok {
			transfer := cfg.BlobTransfer
			if transfer == "" {
				transfer = TransferBuffered
			}
			served := prometheus.NewCounterVec(prometheus.CounterOpts{
				Namespace: "pullgate", Subsystem: "registry", Name: "filesystem_blob_gets_total",
				Help: "Blob GETs served straight from the filesystem rather than through distribution, by transfer (sendfile or buffered).",
			}, []string{"transfer"})
			cfg.Metrics.MustRegister(served)
			blobs = &sendfileBlobs{next: app, root: root, verifier: verifier, served: served.WithLabelValues(string(transfer)), transfer: transfer}
		}
	}
	mux.Handle("/v2/", explainDenied{next: &namespaceGate{
		next:     &referrers{next: blobs, driver: driver, verifier: verifier},
		verifier: verifier, exists: cfg.NamespaceExists,
	}})
	return &Registry{Handler: instrument(cfg.Metrics, mux), app: app}, nil
}

// Shutdown stops the registry's background work.
func (r *Registry) Shutdown() error { return r.app.Shutdown() }

// namespaceGate answers NAME_UNKNOWN for a repository whose namespace does not
// exist, to a caller whose token is valid for that repository (so a namespace's
// existence is told only to whom RBAC would let see it). Everything else goes to
// distribution.
type namespaceGate struct {
	next     http.Handler
	verifier auth.AccessController
	exists   func(string) bool
}

func (g *namespaceGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := repositoryName(r.URL.Path)
	if name == "" || g.exists == nil {
		g.next.ServeHTTP(w, r)
		return
	}
	namespace, _, _ := strings.Cut(name, "/")
	if g.exists(namespace) {
		g.next.ServeHTTP(w, r)
		return
	}
	if !grantsPull(r, g.verifier, name) {
		g.next.ServeHTTP(w, r)
		return
	}
	_ = errcode.ServeJSON(w, errcode.Errors{errcode.ErrorCodeNameUnknown.WithMessage(
		fmt.Sprintf("repository %s: namespace %q does not exist; repositories are <namespace>/<name> (kubectl create namespace %s)", name, namespace, namespace))})
}

// grantsPull reports whether the request's token lets it pull from repository name.
func grantsPull(r *http.Request, verifier auth.AccessController, name string) bool {
	_, err := verifier.Authorized(r, pullAccess(name))
	return err == nil
}

func pullAccess(name string) auth.Access {
	return auth.Access{Resource: auth.Resource{Type: "repository", Name: name}, Action: "pull"}
}

// repositoryName extracts <name> from /v2/<name>/{manifests,blobs,tags,referrers}/….
func repositoryName(path string) string {
	name, _, _ := splitRoute(path)
	return name
}
