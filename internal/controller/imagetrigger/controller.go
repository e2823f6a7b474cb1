package imagetrigger

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"pullgate.dev/pullgate/internal/controller/reconcile"
)

// Event reasons.
const (
	// ReasonUpdated is a Normal Event: a trigger set a container's image.
	ReasonUpdated = "ImageTriggered"
	// ReasonFailed is a Warning Event: a trigger could not be followed.
	ReasonFailed = "FailedImageTrigger"
)

// FieldManager is who the controller's patches are by.
const FieldManager = "pullgate-image-trigger"

// forbiddenRetry is how soon a trigger the pod's account may not pull is tried
// again: a grant by a role binding in the tag's project queues it at once; one by a
// cluster role binding waits for this.
const forbiddenRetry = time.Minute

const (
	streamIndex = "imagetrigger/stream"
	sourceIndex = "imagetrigger/namespace"
)

// workload is one kind the controller follows: its informer, where its pod spec is
// and how to patch it. A Job is not among them: its pod template cannot change once
// created (the lookup webhook sets a Job's triggered images when it is created).
type workload struct {
	kind     string
	specPath string
	informer cache.SharedIndexInformer
	podSpec  func(obj any) (metav1.Object, *corev1.PodSpec, bool)
	patch    func(ctx context.Context, namespace, name string, data []byte) error
}

// Controller patches triggered workloads' images when their tags move.
type Controller struct {
	*reconcile.Loop
	Resolver Resolver
	kinds    map[string]*workload
	recorder record.EventRecorder

	mu sync.Mutex
	// told are the problems last recorded as Events, by workload UID: each is told
	// once while it lasts, and again if it comes back.
	told map[types.UID][]string
}

// Kinds are the kinds the controller follows, with where their pod spec is.
var Kinds = map[string]string{
	"Deployment":  "spec.template.spec",
	"StatefulSet": "spec.template.spec",
	"DaemonSet":   "spec.template.spec",
	"CronJob":     "spec.jobTemplate.spec.template.spec",
}

// New wires the controller to factory's workload and role binding informers. The
// caller tells it of every image stream change with StreamChanged.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, resolver Resolver, recorder record.EventRecorder, log *slog.Logger) (*Controller, error) {
	c := &Controller{Resolver: resolver, recorder: recorder, told: map[types.UID][]string{}}
	c.Loop = reconcile.New("imagetriggers", c.sync, log.With("controller", "imagetriggers"))
	opts := metav1.PatchOptions{FieldManager: FieldManager}
	apps, batch := client.AppsV1(), client.BatchV1()
	kinds := []*workload{
		{kind: "Deployment", informer: factory.Apps().V1().Deployments().Informer(),
			podSpec: typed(func(o *appsv1.Deployment) *corev1.PodSpec { return &o.Spec.Template.Spec }),
			patch: func(ctx context.Context, ns, name string, data []byte) error {
				_, err := apps.Deployments(ns).Patch(ctx, name, types.JSONPatchType, data, opts)
				return err
			}},
		{kind: "StatefulSet", informer: factory.Apps().V1().StatefulSets().Informer(),
			podSpec: typed(func(o *appsv1.StatefulSet) *corev1.PodSpec { return &o.Spec.Template.Spec }),
			patch: func(ctx context.Context, ns, name string, data []byte) error {
				_, err := apps.StatefulSets(ns).Patch(ctx, name, types.JSONPatchType, data, opts)
				return err
			}},
		{kind: "DaemonSet", informer: factory.Apps().V1().DaemonSets().Informer(),
			podSpec: typed(func(o *appsv1.DaemonSet) *corev1.PodSpec { return &o.Spec.Template.Spec }),
			patch: func(ctx context.Context, ns, name string, data []byte) error {
				_, err := apps.DaemonSets(ns).Patch(ctx, name, types.JSONPatchType, data, opts)
				return err
			}},
		{kind: "CronJob", informer: factory.Batch().V1().CronJobs().Informer(),
			podSpec: typed(func(o *batchv1.CronJob) *corev1.PodSpec { return &o.Spec.JobTemplate.Spec.Template.Spec }),
			patch: func(ctx context.Context, ns, name string, data []byte) error {
				_, err := batch.CronJobs(ns).Patch(ctx, name, types.JSONPatchType, data, opts)
				return err
			}},
	}
	c.kinds = map[string]*workload{}
	for _, k := range kinds {
		k.specPath = Kinds[k.kind]
		c.kinds[k.kind] = k
		if err := k.informer.AddIndexers(cache.Indexers{streamIndex: followedStreams(false), sourceIndex: followedStreams(true)}); err != nil {
			return nil, err
		}
		enqueue := func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				if _, triggered := m.GetAnnotations()[Annotation]; triggered {
					c.Add(k.kind + "/" + m.GetNamespace() + "/" + m.GetName())
				}
			}
		}
		if _, err := k.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj any) { enqueue(obj) },
			DeleteFunc: c.forget,
		}); err != nil {
			return nil, err
		}
		c.Synced = append(c.Synced, k.informer.HasSynced)
	}
	// A grant in the tag's project may let a forbidden trigger be followed.
	bindings := factory.Rbac().V1().RoleBindings().Informer()
	granted := func(obj any) {
		if m, ok := obj.(metav1.Object); ok {
			c.enqueueBy(sourceIndex, m.GetNamespace())
		}
	}
	_, err := bindings.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: granted, UpdateFunc: func(_, obj any) { granted(obj) }})
	return c, err
}

// typed adapts a kind's pod spec accessor to the informer's objects.
func typed[T metav1.Object](spec func(T) *corev1.PodSpec) func(any) (metav1.Object, *corev1.PodSpec, bool) {
	return func(obj any) (metav1.Object, *corev1.PodSpec, bool) {
		o, ok := obj.(T)
		if !ok {
			return nil, nil, false
		}
		return o, spec(o), true
	}
}

// followedStreams indexes a workload by the streams (namespace/name) its triggers
// follow, or with namespaces by their namespaces.
func followedStreams(namespaces bool) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		m, ok := obj.(metav1.Object)
		if !ok {
			return nil, nil
		}
		triggers, err := Parse(m.GetAnnotations())
		if err != nil {
			return nil, nil
		}
		var keys []string
		for _, t := range triggers {
			ns, stream, _, err := t.Tag(m.GetNamespace())
			if err != nil {
				continue
			}
			key := ns + "/" + stream
			if namespaces {
				key = ns
			}
			if !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
		return keys, nil
	}
}

// StreamChanged queues every workload following a tag of stream namespace/name.
func (c *Controller) StreamChanged(namespace, name string) {
	c.enqueueBy(streamIndex, namespace+"/"+name)
}

func (c *Controller) enqueueBy(index, value string) {
	for _, k := range c.kinds {
		objs, err := k.informer.GetIndexer().ByIndex(index, value)
		if err != nil {
			continue
		}
		for _, obj := range objs {
			if m, ok := obj.(metav1.Object); ok {
				c.Add(k.kind + "/" + m.GetNamespace() + "/" + m.GetName())
			}
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	kind, nsName, _ := strings.Cut(key, "/")
	k := c.kinds[kind]
	if k == nil {
		return 0, nil
	}
	obj, exists, err := k.informer.GetIndexer().GetByKey(nsName)
	if err != nil || !exists {
		return 0, nil
	}
	m, spec, ok := k.podSpec(obj)
	if !ok {
		return 0, nil
	}
	plan := c.Resolver.Plan(m.GetNamespace(), m.GetAnnotations(), spec, k.specPath)
	c.report(obj.(runtime.Object), m.GetUID(), plan.Problems)
	if len(plan.Patch) > 0 {
		data, err := json.Marshal(plan.Patch)
		if err != nil {
			return 0, err
		}
		if err := k.patch(ctx, m.GetNamespace(), m.GetName(), data); err != nil {
			// A test failed (the image changed under us) or the API refused: the next
			// sync plans from what the informer holds then.
			return 0, fmt.Errorf("patching %s %s/%s: %w", strings.ToLower(kind), m.GetNamespace(), m.GetName(), err)
		}
		for _, change := range plan.Changes {
			c.recorder.Event(obj.(runtime.Object), corev1.EventTypeNormal, ReasonUpdated, change)
		}
	}
	if plan.Forbidden {
		return forbiddenRetry, nil
	}
	return 0, nil
}

// report records each problem as a Warning Event once while it lasts.
func (c *Controller) report(obj runtime.Object, uid types.UID, problems []string) {
	c.mu.Lock()
	told := c.told[uid]
	if len(problems) == 0 {
		delete(c.told, uid)
	} else {
		c.told[uid] = problems
	}
	c.mu.Unlock()
	for _, p := range problems {
		if !slices.Contains(told, p) {
			c.recorder.Event(obj, corev1.EventTypeWarning, ReasonFailed, p)
		}
	}
}

func (c *Controller) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if m, ok := obj.(metav1.Object); ok {
		c.mu.Lock()
		delete(c.told, m.GetUID())
		c.mu.Unlock()
	}
}
