package controllers

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ProjectServiceAccounts are the service accounts OpenShift gives every project
// besides Kubernetes' default: builder and deployer.
var ProjectServiceAccounts = []string{"builder", "deployer"}

// ServiceAccounts gives every namespace the builder and deployer service accounts,
// re-creating one that is deleted, as OpenShift does.
type ServiceAccounts struct {
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
	log        *slog.Logger
}

// NewServiceAccounts wires the controller to factory's informers.
func NewServiceAccounts(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) (*ServiceAccounts, error) {
	ns := factory.Core().V1().Namespaces()
	sa := factory.Core().V1().ServiceAccounts()
	c := &ServiceAccounts{
		client: client, namespaces: ns.Lister(), accounts: sa.Lister(),
		synced: []cache.InformerSynced{ns.Informer().HasSynced, sa.Informer().HasSynced},
		queue:  newQueue("serviceaccounts"),
		log:    log.With("controller", "serviceaccounts"),
	}
	if _, err := ns.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Namespace); ok {
				c.queue.Add(n.Name)
			}
		},
	}); err != nil {
		return nil, err
	}
	if _, err := sa.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: enqueueNamespaceOf(c.queue)}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run processes namespaces until ctx ends.
func (c *ServiceAccounts) Run(ctx context.Context, workers int) error {
	return runWorkers(ctx, "serviceaccounts", c.synced, c.queue, workers, func(ctx context.Context) bool {
		return processNext(ctx, c.queue, c.sync, c.log)
	})
}

func (c *ServiceAccounts) sync(ctx context.Context, name string) error {
	if live, err := liveNamespace(c.namespaces, name); !live || err != nil {
		return err
	}
	for _, sa := range ProjectServiceAccounts {
		if _, err := c.accounts.ServiceAccounts(name).Get(sa); err == nil {
			continue
		}
		_, err := c.client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{FieldManager: fieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
			return fmt.Errorf("serviceaccount %s/%s: %w", name, sa, err)
		}
	}
	return nil
}
