package services

import (
	"context"
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/internal/registry/roles"
)

// cluster is the Kubernetes API as pullgate's services see it: clients, and the
// informers every part decides from (RBAC, namespaces, ImageStreams).
type cluster struct {
	rest    *rest.Config
	client  kubernetes.Interface
	dynamic dynamic.Interface
	factory informers.SharedInformerFactory
	authz   *rbacauthz.Authorizer
	streams *imageapi.Index
}

// connect makes the clients and informers; nothing is watched until start.
func connect(restConfig *rest.Config) (*cluster, error) {
	restConfig = WithRateLimits(restConfig)
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	authz, err := rbacauthz.New(factory)
	if err != nil {
		return nil, err
	}
	// The bindings controller creates these in every namespace; until it has, they
	// count as if it had (no refused pull for a pod created with its namespace).
	authz.Defaults = roles.RoleBindings
	factory.Core().V1().Namespaces().Informer() // registered before the factory starts
	return &cluster{rest: restConfig, client: client, dynamic: dyn, factory: factory, authz: authz, streams: imageapi.NewIndex(dyn)}, nil
}

// start watches until runCtx ends, and waits until the informers hold the cluster.
func (c *cluster) start(ctx, runCtx context.Context) error {
	c.factory.Start(runCtx.Done())
	go c.streams.Run(runCtx)
	namespaces := c.factory.Core().V1().Namespaces().Informer()
	if !c.authz.WaitForSync(ctx) || !cache.WaitForCacheSync(ctx.Done(), namespaces.HasSynced) {
		return fmt.Errorf("informers did not sync: %w", context.Cause(ctx))
	}
	return c.streams.WaitForSync(ctx)
}

// namespaceExists answers from the informer.
func (c *cluster) namespaceExists(name string) bool {
	_, err := c.factory.Core().V1().Namespaces().Lister().Get(name)
	return err == nil
}

// streamsAPI is the ImageStream API as the registry uses it: reads from the index,
// writes through the API.
type streamsAPI struct {
	imageapi.Streams
	*imageapi.Index
}

// UID reads from the index.
func (s streamsAPI) UID(namespace, name string) (string, bool) { return s.Index.UID(namespace, name) }

// History reads from the index.
func (s streamsAPI) History(ctx context.Context, namespace, name string) ([]string, error) {
	return s.Index.History(ctx, namespace, name)
}

func (c *cluster) streamsAPI() streamsAPI {
	return streamsAPI{Streams: imageapi.Streams{Client: c.dynamic}, Index: c.streams}
}

// WithRateLimits is c at 1000 requests/s: client-go's default 5 would take minutes to
// give a burst of new namespaces their service accounts and pull secrets, and make a
// server that calls the API a few times per request wait on its own client.
func WithRateLimits(c *rest.Config) *rest.Config {
	c = rest.CopyConfig(c)
	if c.QPS == 0 {
		c.QPS, c.Burst = 1000, 2000
	}
	return c
}
