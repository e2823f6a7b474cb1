package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"pullgate.dev/pullgate/internal/controller/reconcile"
	"pullgate.dev/pullgate/internal/explain"
)

// ReasonPullExplained is the reason of the Events PullFailures records.
const ReasonPullExplained = "PullExplained"

// PodExplainer explains a pod's pulls (explain.Explainer).
type PodExplainer interface {
	Pod(ctx context.Context, namespace, name string) (explain.Report, error)
}

// PullFailures records on every pod whose image pull fails (ErrImagePull,
// ImagePullBackOff, on any node and any kubelet) a Warning Event with explain pull's
// cause and the command that fixes it: a container runtime shows only "pull access
// denied … insufficient_scope", and drops the registry's answer that says who was
// refused and why. One Event per pod, container and cause; none for a pull that
// explain finds would succeed (the cause is then not credentials).
type PullFailures struct {
	*reconcile.Loop
	pods      corelisters.PodLister
	explainer PodExplainer
	recorder  record.EventRecorder

	mu sync.Mutex
	// told are the causes recorded, by pod UID.
	told map[types.UID]map[string]bool
}

// NewPullFailures wires the controller to factory's pod informer.
func NewPullFailures(factory informers.SharedInformerFactory, explainer PodExplainer, recorder record.EventRecorder, log *slog.Logger) (*PullFailures, error) {
	pods := factory.Core().V1().Pods()
	c := &PullFailures{pods: pods.Lister(), explainer: explainer, recorder: recorder, told: map[types.UID]map[string]bool{}}
	c.Loop = reconcile.New("pullfailures", c.sync, log.With("controller", "pullfailures"))
	c.Synced = []cache.InformerSynced{pods.Informer().HasSynced}
	enqueue := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok && len(failingPulls(pod)) > 0 {
			c.EnqueueKey(obj)
		}
	}
	_, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: c.forget,
	})
	return c, err
}

// pullFailureReasons are the kubelet's waiting reasons for a failed pull.
var pullFailureReasons = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true}

// failingPulls are the pod's containers waiting on a failed pull.
func failingPulls(pod *corev1.Pod) map[string]bool {
	failing := map[string]bool{}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range list {
			if s.State.Waiting != nil && pullFailureReasons[s.State.Waiting.Reason] {
				failing[s.Name] = true
			}
		}
	}
	return failing
}

func (c *PullFailures) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if err != nil {
		return 0, nil // deleted
	}
	failing := failingPulls(pod)
	if len(failing) == 0 {
		return 0, nil
	}
	report, err := c.explainer.Pod(ctx, ns, name)
	if err != nil {
		if reconcile.Gone(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("explaining pod %s: %w", key, err)
	}
	for _, img := range report.Images {
		container := containerName(img.Container)
		if !failing[container] || img.Verdict.WouldPull || img.Verdict.Cause == "" {
			continue
		}
		cause := img.Verdict.Cause
		if !c.firstTime(pod.UID, container+"\x00"+cause) {
			continue
		}
		msg := fmt.Sprintf("%s cannot pull %s: %s", img.Container, img.Image, cause)
		if img.Verdict.Fix != "" {
			msg += ". Fix: " + img.Verdict.Fix
		}
		c.recorder.Event(pod, corev1.EventTypeWarning, ReasonPullExplained, msg)
	}
	return 0, nil
}

// containerName is the name in explain's "container NAME" (or "init container NAME").
func containerName(s string) string {
	return s[strings.LastIndex(s, " ")+1:]
}

func (c *PullFailures) firstTime(uid types.UID, cause string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.told[uid] == nil {
		c.told[uid] = map[string]bool{}
	}
	if c.told[uid][cause] {
		return false
	}
	c.told[uid][cause] = true
	return true
}

func (c *PullFailures) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		c.mu.Lock()
		delete(c.told, pod.UID)
		c.mu.Unlock()
	}
}
