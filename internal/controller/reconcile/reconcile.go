// Package reconcile runs a level-triggered reconciler over a rate-limited work queue
// of object keys, as Kubernetes' own controllers do: workers take keys, reconcile
// them, retry failures with back-off, and requeue a key when the reconciler asks to
// look again later. Run waits for its workers before it returns.
package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Func reconciles one key; a positive after asks for the key again after that long.
type Func func(ctx context.Context, key string) (after time.Duration, err error)

// Loop is one reconciler and its queue.
type Loop struct {
	Name      string
	Queue     workqueue.TypedRateLimitingInterface[string]
	Synced    []cache.InformerSynced
	Reconcile Func
	Log       *slog.Logger
}

// New is a loop with a new rate-limited queue (5 ms doubling to 1000 s per key, and
// 10 keys/s overall with bursts of 100: client-go's default controller limiter).
func New(name string, reconcile Func, log *slog.Logger) *Loop {
	return &Loop{
		Name: name,
		Queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		Reconcile: reconcile,
		Log:       log,
	}
}

// Add queues key.
func (l *Loop) Add(key string) { l.Queue.Add(key) }

// EnqueueKey queues the namespace/name key of an object (or of its tombstone).
func (l *Loop) EnqueueKey(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		l.Queue.Add(key)
	}
}

// EnqueueNamespaceOf queues the namespace of a namespaced object (or of its
// tombstone): a per-namespace reconciler reacting to one of its objects.
func (l *Loop) EnqueueNamespaceOf(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if m, err := meta.Accessor(obj); err == nil && m.GetNamespace() != "" {
		l.Queue.Add(m.GetNamespace())
	}
}

// Run waits for the caches, then runs workers until ctx ends, and returns once every
// worker has stopped.
func (l *Loop) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer l.Queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), l.Synced...) {
		return fmt.Errorf("%s: caches did not sync: %w", l.Name, context.Cause(ctx))
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	l.Queue.ShutDown()
	wg.Wait()
	return nil
}

// next reconciles the next key; false when the queue is shut down.
func (l *Loop) next(ctx context.Context) bool {
	key, quit := l.Queue.Get()
	if quit {
		return false
	}
	defer l.Queue.Done(key)
	after, err := l.Reconcile(ctx, key)
	if Gone(err) {
		err = nil
	}
	if err != nil {
		// Retried without a cap, unlike upstream controllers (which drop a key after a
		// few tries and count on a periodic resync to bring it back): these informers
		// do not resync — relisting every namespace and account would cost more than
		// it finds — so a dropped key would stay wrong until its object next changed.
		// The back-off caps at 1000 s a key, so a key that keeps failing costs one
		// attempt a quarter of an hour, each logged with its count.
		l.Log.Warn("not reconciled; retrying", "key", key, "attempt", l.Queue.NumRequeues(key)+1, "err", err)
		l.Queue.AddRateLimited(key)
		return true
	}
	l.Queue.Forget(key)
	if after > 0 {
		l.Queue.AddAfter(key, after)
	}
	return true
}

// Gone reports an error that says the object's namespace is being deleted: there is
// nothing left to reconcile there (as upstream controllers ignore
// NamespaceTerminatingCause, and only it).
func Gone(err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}
