package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// newQueue is a controller's rate-limited work queue of object keys.
func newQueue(name string) workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name})
}

// enqueueNamespaceOf queues the namespace of a namespaced object (or of its
// tombstone): a per-namespace controller reacting to one of its objects.
func enqueueNamespaceOf(queue workqueue.TypedRateLimitingInterface[string]) func(obj any) {
	return func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if m, err := meta.Accessor(obj); err == nil && m.GetNamespace() != "" {
			queue.Add(m.GetNamespace())
		}
	}
}

// liveNamespace reports whether namespace name exists and is not being deleted: a
// per-namespace controller has nothing to do otherwise.
func liveNamespace(namespaces corelisters.NamespaceLister, name string) (bool, error) {
	ns, err := namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return ns.Status.Phase != corev1.NamespaceTerminating && ns.DeletionTimestamp == nil, nil
}

// fieldManager names pullgate's controllers in managedFields.
const fieldManager = "pullgate-controllers"

// runWorkers waits for the caches, then runs workers that call process until it says
// the queue is shut down, until ctx ends: every controller's Run.
func runWorkers(ctx context.Context, name string, synced []cache.InformerSynced, queue workqueue.TypedRateLimitingInterface[string], workers int, process func(context.Context) bool) error {
	defer utilruntime.HandleCrash()
	defer queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("%s controller: caches did not sync: %w", name, context.Cause(ctx))
	}
	for range workers {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for process(ctx) {
			}
		}, time.Second)
	}
	<-ctx.Done()
	return nil
}

// processNext runs sync for the next key of queue, retrying with back-off on error.
func processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], sync func(context.Context, string) error, log *slog.Logger) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)
	if err := sync(ctx, key); err != nil {
		log.Warn("not reconciled; retrying", "key", key, "err", err)
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}
