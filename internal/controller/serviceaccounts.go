package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"pullgate.dev/pullgate/internal/controller/reconcile"
)

// ProjectServiceAccounts are the service accounts OpenShift gives every project
// besides Kubernetes' default: builder and deployer.
var ProjectServiceAccounts = []string{"builder", "deployer"}

// ServiceAccounts gives every namespace the builder and deployer service accounts,
// re-creating one that is deleted, as OpenShift does.
type ServiceAccounts struct {
	*reconcile.Loop
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
}

// NewServiceAccounts wires the controller to factory's informers.
func NewServiceAccounts(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) (*ServiceAccounts, error) {
	ns := factory.Core().V1().Namespaces()
	sa := factory.Core().V1().ServiceAccounts()
	c := &ServiceAccounts{client: client, namespaces: ns.Lister(), accounts: sa.Lister()}
	c.Loop = reconcile.New("serviceaccounts", c.sync, log.With("controller", "serviceaccounts"))
	c.Synced = []cache.InformerSynced{ns.Informer().HasSynced, sa.Informer().HasSynced}
	if _, err := ns.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.EnqueueKey}); err != nil {
		return nil, err
	}
	if _, err := sa.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: c.EnqueueNamespaceOf}); err != nil {
		return nil, err
	}
	return c, nil
}

// sync gives namespace name the service accounts it lacks.
func (c *ServiceAccounts) sync(ctx context.Context, name string) (time.Duration, error) {
	if live, err := liveNamespace(c.namespaces, name); !live || err != nil {
		return 0, err
	}
	for _, sa := range ProjectServiceAccounts {
		if _, err := c.accounts.ServiceAccounts(name).Get(sa); err == nil {
			continue
		}
		_, err := c.client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{FieldManager: fieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, fmt.Errorf("serviceaccount %s/%s: %w", name, sa, err)
		}
	}
	return 0, nil
}
