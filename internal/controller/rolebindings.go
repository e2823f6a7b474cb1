// Package controller holds pullgate's reconcilers. Each is level-triggered and
// idempotent: it compares what the cluster has with what it should have, acts on the
// difference, and can be killed and restarted at any point.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"pullgate.dev/pullgate/internal/controller/reconcile"
	"pullgate.dev/pullgate/internal/registry/roles"
)

// RoleBindings gives every namespace the registry's default role bindings
// (system:image-pullers, system:image-builders, system:deployers). A missing binding
// is created; an existing one is never changed, so a user's edit of its subjects
// stands, as in OpenShift.
type RoleBindings struct {
	*reconcile.Loop
	client       kubernetes.Interface
	namespaces   corelisters.NamespaceLister
	roleBindings rbaclisters.RoleBindingLister
	log          *slog.Logger
}

// NewRoleBindings wires the controller to factory's informers.
func NewRoleBindings(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) (*RoleBindings, error) {
	ns := factory.Core().V1().Namespaces()
	rb := factory.Rbac().V1().RoleBindings()
	log = log.With("controller", "rolebindings")
	c := &RoleBindings{client: client, namespaces: ns.Lister(), roleBindings: rb.Lister(), log: log}
	c.Loop = reconcile.New("rolebindings", c.sync, log)
	c.Synced = []cache.InformerSynced{ns.Informer().HasSynced, rb.Informer().HasSynced}
	if _, err := ns.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.EnqueueKey,
		UpdateFunc: func(_, obj any) { c.EnqueueKey(obj) },
	}); err != nil {
		return nil, err
	}
	if _, err := rb.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: c.EnqueueNamespaceOf}); err != nil {
		return nil, err
	}
	return c, nil
}

// sync gives namespace name the bindings it lacks.
func (c *RoleBindings) sync(ctx context.Context, name string) (time.Duration, error) {
	if live, err := liveNamespace(c.namespaces, name); !live || err != nil {
		return 0, err
	}
	for _, want := range roles.RoleBindings(name) {
		if _, err := c.roleBindings.RoleBindings(name).Get(want.Name); err == nil {
			continue
		}
		_, err := c.client.RbacV1().RoleBindings(name).Create(ctx, want, metav1.CreateOptions{FieldManager: fieldManager})
		switch {
		case err == nil:
			c.log.Debug("created rolebinding", "namespace", name, "name", want.Name)
		case apierrors.IsAlreadyExists(err):
		default:
			return 0, fmt.Errorf("creating rolebinding %s/%s: %w", name, want.Name, err)
		}
	}
	return 0, nil
}
