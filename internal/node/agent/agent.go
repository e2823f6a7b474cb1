// Package agent is pullgate's pull-only node: it registers a Node, keeps its
// heartbeats, and pulls the images of the pods the scheduler binds to it, choosing
// credentials exactly as a kubelet does (the pod's image pull secrets, then the node's
// credentials), and reports the outcome on the pod as a kubelet would: containers
// waiting in ErrImagePull or ImagePullBackOff with the precise cause, events, and the
// ImagesPulled condition. It runs no containers, and says so in each pod's status.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"pullgate.dev/pullgate/internal/registry/location"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"

	"pullgate.dev/pullgate/internal/controller/reconcile"
	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Back-off between failed pulls of one image for one pod: the kubelet's.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
)

// StreamHistory lists every digest the tags of ImageStream namespace/name point or
// pointed at (imageapi.Index in process, imageapi.Streams over the API).
type StreamHistory interface {
	History(ctx context.Context, namespace, name string) ([]string, error)
}

// Config is what a node agent runs with.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// ImageDir is the node's OCI image layout.
	ImageDir string
	// RegistryHosts are the names of pullgate's integrated registry, whose images
	// PullAuthorizer is asked about.
	RegistryHosts location.Hosts
	// CredentialProviders are the kubelet's image credential provider plugins
	// (internal/credentialplugins), tried after the pod's secrets and the node's
	// credentials, as the kubelet does. pullgate's own plugin gives the pod's service
	// account token for the integrated registry (KEP-4412).
	CredentialProviders CredentialProviders
	// PullAuthorizer, when set, is asked before an image of the integrated registry
	// already on the node is given to a pod: a grant removed since the image was
	// pulled then bites at once, without a round trip to the registry.
	PullAuthorizer PullAuthorizer
	// Streams, when set, is asked too: the registry must still serve a cached image
	// of the integrated registry in its repository (its ImageStream's tag history).
	Streams StreamHistory
	// NodeCredentials returns the node's own credentials (the cluster pull secret),
	// tried after the pod's.
	NodeCredentials func(ctx context.Context) ([]*credentials.Config, error)
	// Transport is the base HTTP transport for registries (with trusted CAs).
	Transport http.RoundTripper
	// Workers is how many pods are worked on at once.
	Workers int
	// BlobReverifyInterval is how often every stored blob is hashed again before its
	// next use (default 24 hours); each is hashed anyway before its first use by a
	// newly started agent.
	BlobReverifyInterval time.Duration
	Version              string
	// Ready, when set, is called once the node is registered and its pods are known.
	Ready   func()
	Metrics prometheus.Registerer
	Log     *slog.Logger
}

// CredentialProviders give a pod's credentials from the node's credential provider
// plugins.
type CredentialProviders interface {
	ForPod(pod *corev1.Pod) credentials.Provider
	// Forget drops what was kept for a pod that is gone (its tokens).
	Forget(podUID types.UID)
}

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	puller   *imagepull.Puller
	pods     cache.SharedIndexInformer
	loop     *reconcile.Loop
	recorder record.EventRecorder
	metrics  *metrics

	mu       sync.Mutex
	backoff  *flowcontrol.Backoff
	failures map[string]*pullFailure // podUID/image → the last failure
	uids     map[string]string       // namespace/name → UID of the pods seen

	imagesMu  sync.Mutex
	published []corev1.ContainerImage // the images the node's status lists
}

type pullFailure struct {
	at          time.Time
	reason, msg string
	backoffSeen bool
}

// New prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	store, err := imagepull.OpenStore(cfg.ImageDir)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	a := &Agent{
		cfg:      cfg,
		puller:   &imagepull.Puller{Store: store, Transport: cfg.Transport, IntegratedHosts: cfg.RegistryHosts},
		pods:     factory.Core().V1().Pods().Informer(),
		metrics:  newMetrics(cfg.Metrics),
		backoff:  flowcontrol.NewBackOff(backoffInitial, backoffMax),
		failures: map[string]*pullFailure{},
		uids:     map[string]string{},
	}
	store.OnCorrupt = func(v1.Hash) { a.metrics.corrupt.Inc() }
	a.loop = reconcile.New("pods", a.sync, cfg.Log)
	a.loop.Synced = []cache.InformerSynced{a.pods.HasSynced}
	_, err = a.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.loop.EnqueueKey,
		UpdateFunc: func(_, obj any) { a.loop.EnqueueKey(obj) },
		DeleteFunc: a.loop.EnqueueKey,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Run registers the node, then works until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.cfg.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "pullgate-node", Host: a.cfg.NodeName})

	if err := a.register(ctx); err != nil {
		return err
	}
	go a.heartbeat(ctx)
	go a.pods.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced) {
		return fmt.Errorf("node %s: pod informer did not sync: %w", a.cfg.NodeName, context.Cause(ctx))
	}
	a.cfg.Log.Info("node agent ready", "node", a.cfg.NodeName, "images", a.puller.Store.Dir())
	if a.cfg.Ready != nil {
		a.cfg.Ready()
	}
	reverify := a.cfg.BlobReverifyInterval
	if reverify <= 0 {
		reverify = 24 * time.Hour
	}
	go wait.Until(a.puller.Store.Reverify, reverify, ctx.Done())
	return a.loop.Run(ctx, a.cfg.Workers)
}
