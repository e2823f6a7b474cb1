package services

import (
	"context"
	"log/slog"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"pullgate.dev/pullgate/internal/controllers"
	"pullgate.dev/pullgate/internal/registryauth"
	"pullgate.dev/pullgate/internal/registryroles"
)

// controllerSet is pullgate's reconcilers: per-namespace role bindings, the builder
// and deployer service accounts, and every service account's registry pull secret.
type controllerSet struct {
	roleBindings    *controllers.RoleBindings
	serviceAccounts *controllers.ServiceAccounts
	pullSecrets     *controllers.PullSecrets
	labelled        informers.SharedInformerFactory
}

// newControllers wires the controllers to factory (and to a factory of their own for
// the pull secrets, watched by label).
func newControllers(client kubernetes.Interface, factory informers.SharedInformerFactory, registryNames []string, log *slog.Logger) (*controllerSet, error) {
	labelled := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = controllers.PullSecretSelector().String()
	}))
	rb, err := controllers.NewRoleBindings(client, factory, log)
	if err != nil {
		return nil, err
	}
	sa, err := controllers.NewServiceAccounts(client, factory, log)
	if err != nil {
		return nil, err
	}
	ps, err := controllers.NewPullSecrets(client, factory, labelled, registryNames, registryauth.Service, log)
	if err != nil {
		return nil, err
	}
	return &controllerSet{roleBindings: rb, serviceAccounts: sa, pullSecrets: ps, labelled: labelled}, nil
}

// run starts the controllers' own informers and the controllers, until ctx ends.
func (c *controllerSet) run(ctx context.Context) {
	c.labelled.Start(ctx.Done())
	go func() { _ = c.roleBindings.Run(ctx, 2) }()
	go func() { _ = c.serviceAccounts.Run(ctx, 2) }()
	go func() { _ = c.pullSecrets.Run(ctx, 16) }()
}

// RunControllers runs only the controllers against the cluster restConfig reaches,
// until ctx ends: `pullgate controllers`.
func RunControllers(ctx context.Context, restConfig *rest.Config, registryNames []string, log *slog.Logger) error {
	client, err := kubernetes.NewForConfig(withRateLimits(restConfig))
	if err != nil {
		return err
	}
	if err := registryroles.EnsureClusterRoles(ctx, client); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	set, err := newControllers(client, factory, registryNames, log)
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	set.run(ctx)
	log.Info("controllers running", "registry-names", registryNames)
	<-ctx.Done()
	return nil
}
