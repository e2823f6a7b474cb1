package services

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"pullgate.dev/pullgate/internal/controller"
	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/controller/leader"
	"pullgate.dev/pullgate/internal/explain"
	"pullgate.dev/pullgate/internal/platform/healthz"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/keys"
	"pullgate.dev/pullgate/internal/registry/location"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// runControllers runs pullgate's reconcilers — per-namespace role bindings, the
// builder and deployer service accounts, every service account's registry pull
// secret, pull failures explained on their pods, and image-change triggers — for one
// leadership term: with informers of their own, started now and stopped when term
// ends, so that the next term (here or on another replica) starts from what the
// cluster holds then.
// With removePullSecrets the pull secrets controller deletes the secrets it wrote
// instead of keeping them.
func runControllers(term context.Context, clients controllerClients, registryNames []string, removePullSecrets bool, log *slog.Logger) {
	client := clients.kube
	factory := informers.NewSharedInformerFactory(client, 0)
	labelled := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = controller.PullSecretSelector().String()
	}))
	defer labelled.Shutdown()
	defer factory.Shutdown()
	rb, err := controller.NewRoleBindings(client, factory, log)
	if err != nil {
		log.Error("role bindings controller", "err", err)
		return
	}
	sa, err := controller.NewServiceAccounts(client, factory, log)
	if err != nil {
		log.Error("service accounts controller", "err", err)
		return
	}
	ps, err := controller.NewPullSecrets(client, factory, labelled, registryNames, tokenauth.Service, log)
	if err != nil {
		log.Error("pull secrets controller", "err", err)
		return
	}
	ps.Remove = removePullSecrets
	authz, err := rbacauthz.New(factory)
	if err != nil {
		log.Error("pull failures controller", "err", err)
		return
	}
	events := record.NewBroadcaster(record.WithContext(term))
	defer events.Shutdown()
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "pullgate-controllers"})
	// The nodes pull the integrated registry with the credential provider when
	// service accounts have no pull secrets; explain weighs it either way (up's node
	// has it; a pod's own secrets come first).
	explainer := &explain.Explainer{Client: client, Authz: authz, RegistryHosts: location.Hosts(registryNames), CredentialProvider: true}
	pf, err := controller.NewPullFailures(factory, explainer, recorder, log)
	if err != nil {
		log.Error("pull failures controller", "err", err)
		return
	}
	pf.Synced = append(pf.Synced, authz.Synced()...)
	// Image triggers: the streams from their own informer, workloads and RBAC from
	// the factory's.
	streams := imageapi.NewIndex(clients.dynamic)
	triggers, err := imagetrigger.New(client, factory, imagetrigger.Resolver{Streams: streams, Authz: authz, RegistryHost: registryNames[0]}, recorder, log)
	if err != nil {
		log.Error("image triggers controller", "err", err)
		return
	}
	if err := streams.OnChange(triggers.StreamChanged); err != nil {
		log.Error("image triggers controller", "err", err)
		return
	}
	triggers.Synced = append(triggers.Synced, authz.Synced()...)
	triggers.Synced = append(triggers.Synced, streams.HasSynced)
	go streams.Run(term)
	factory.Start(term.Done())
	labelled.Start(term.Done())
	loops := []func() error{
		// A namespace's role bindings and accounts gate its pull secrets, whose sync
		// is five requests in a row: enough workers that a burst of namespaces waits
		// on the API server, not on a queue (the raw rate needs ~64 writers).
		func() error { return rb.Run(term, 16) },
		func() error { return sa.Run(term, 16) },
		func() error { return ps.Run(term, 64) },
		func() error { return pf.Run(term, 2) },
		func() error { return triggers.Run(term, 2) },
	}
	done := make(chan struct{}, len(loops))
	for _, run := range loops {
		go func() { _ = run(); done <- struct{}{} }()
	}
	for range loops {
		<-done
	}
}

// controllerClients are the controllers' clients, as the controllers' identity.
type controllerClients struct {
	kube    kubernetes.Interface
	dynamic dynamic.Interface
}

func newControllerClients(cfg *rest.Config) (controllerClients, error) {
	cfg = WithRateLimits(cfg)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return controllerClients{}, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	return controllerClients{kube: kube, dynamic: dyn}, err
}

// ControllersConfig is `pullgate controllers`.
type ControllersConfig struct {
	KubeConfig    *rest.Config
	RegistryNames []string
	// Health, when set, serves /healthz and /metrics.
	Health   net.Listener
	Identity string
	// NoPullSecrets stops writing service accounts' registry pull secrets and removes
	// those written before (kubelets pull with the credential provider).
	NoPullSecrets bool
	Log           *slog.Logger
}

// RunControllers takes part in the controllers' leader election against the cluster
// cfg.KubeConfig reaches, and runs the controllers while it leads, until ctx ends.
func RunControllers(ctx context.Context, cfg ControllersConfig) error {
	clients, err := newControllerClients(cfg.KubeConfig)
	if err != nil {
		return err
	}
	metrics := newMetrics()
	elector := leader.New(leader.Config{Client: clients.kube, Namespace: keys.Namespace, Name: leader.ControllersLease,
		Identity: cfg.Identity, Metrics: metrics, Log: cfg.Log})
	if cfg.Health != nil {
		mux := http.NewServeMux()
		mux.Handle("/healthz", healthz.Handler(leaderCheck(elector)))
		mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
		server := newServer(mux)
		go func() {
			if err := server.Serve(cfg.Health); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Log.Error("health server stopped", "err", err)
			}
		}()
		defer server.Close()
	}
	cfg.Log.Info("controllers taking part in leader election", "lease", keys.Namespace+"/"+leader.ControllersLease,
		"identity", elector.Identity(), "registry-names", cfg.RegistryNames)
	return elector.Run(ctx, func(term context.Context) {
		runControllers(term, clients, cfg.RegistryNames, cfg.NoPullSecrets, cfg.Log)
	})
}

// leaderCheck is /healthz's view of the election: who leads, and whether this
// replica is a leader that can no longer renew its Lease.
func leaderCheck(e *leader.Elector) healthz.Check {
	return healthz.Check{Name: "leader-election", Check: e.Check, Detail: e.Status}
}

// healthChecks are /healthz's checks of the election this replica takes part in, if any.
func healthChecks(e *leader.Elector) []healthz.Check {
	if e == nil {
		return nil
	}
	return []healthz.Check{leaderCheck(e)}
}

// newMetrics is a Prometheus registry with the Go and process collectors.
func newMetrics() *prometheus.Registry {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return metrics
}
