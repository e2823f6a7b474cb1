// Package controllers holds pullgate's reconcilers. Each is level-triggered and
// idempotent: it compares what the cluster has with what it should have, acts on the
// difference, and can be killed and restarted at any point.
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
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"pullgate.dev/pullgate/internal/registryroles"
)

// RoleBindings gives every namespace the registry's default role bindings
// (system:image-pullers, system:image-builders, system:deployers). A missing binding
// is created; an existing one is never changed, so a user's edit of its subjects
// stands, as in OpenShift.
type RoleBindings struct {
	client       kubernetes.Interface
	namespaces   corelisters.NamespaceLister
	roleBindings rbaclisters.RoleBindingLister
	synced       []cache.InformerSynced
	queue        workqueue.TypedRateLimitingInterface[string]
	log          *slog.Logger
}

// NewRoleBindings wires the controller to factory's informers.
func NewRoleBindings(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) (*RoleBindings, error) {
	ns := factory.Core().V1().Namespaces()
	rb := factory.Rbac().V1().RoleBindings()
	c := &RoleBindings{
		client:       client,
		namespaces:   ns.Lister(),
		roleBindings: rb.Lister(),
		synced:       []cache.InformerSynced{ns.Informer().HasSynced, rb.Informer().HasSynced},
		queue:        newQueue("rolebindings"),
		log:          log.With("controller", "rolebindings"),
	}
	enqueueNamespace := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	if _, err := ns.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueNamespace,
		UpdateFunc: func(_, obj any) { enqueueNamespace(obj) },
	}); err != nil {
		return nil, err
	}
	if _, err := rb.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: enqueueNamespaceOf(c.queue)}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run processes namespaces until ctx ends.
func (c *RoleBindings) Run(ctx context.Context, workers int) error {
	return runWorkers(ctx, "rolebindings", c.synced, c.queue, workers, func(ctx context.Context) bool {
		return processNext(ctx, c.queue, c.sync, c.log)
	})
}

func (c *RoleBindings) sync(ctx context.Context, name string) error {
	if live, err := liveNamespace(c.namespaces, name); !live || err != nil {
		return err
	}
	for _, want := range registryroles.RoleBindings(name) {
		if _, err := c.roleBindings.RoleBindings(name).Get(want.Name); err == nil {
			continue
		}
		_, err := c.client.RbacV1().RoleBindings(name).Create(ctx, want, metav1.CreateOptions{})
		switch {
		case err == nil:
			c.log.Debug("created rolebinding", "namespace", name, "name", want.Name)
		case apierrors.IsAlreadyExists(err):
		case apierrors.IsForbidden(err) && isTerminating(err):
			return nil
		default:
			return fmt.Errorf("creating rolebinding %s/%s: %w", name, want.Name, err)
		}
	}
	return nil
}

// isTerminating recognises the API server's refusal to create in a namespace being deleted.
func isTerminating(err error) bool {
	status, ok := err.(apierrors.APIStatus)
	return ok && status.Status().Details != nil && status.Status().Details.Causes != nil &&
		len(status.Status().Details.Causes) > 0 && status.Status().Details.Causes[0].Type == corev1.NamespaceTerminatingCause
}
