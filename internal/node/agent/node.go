package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Heartbeats: the kubelet's lease renewal and node status report periods.
const (
	leaseDuration  = 40 * time.Second
	leaseRenew     = 10 * time.Second
	statusInterval = time.Minute
)

// LabelPullOnly marks a pullgate node.
const LabelPullOnly = "node.pullgate.dev/pull-only"

func (a *Agent) nodeStatus() corev1.NodeStatus {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memoryBytes(), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	now := metav1.Now()
	hostname, _ := os.Hostname()
	status := corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "PullgateNodeReady",
			Message:           "pullgate node agent is pulling the images of pods bound here; it runs no containers",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: hostname}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: "linux", Architecture: runtime.GOARCH,
			KubeletVersion:          "pullgate-" + a.cfg.Version,
			ContainerRuntimeVersion: "none://pull-only",
		},
	}
	status.Images, _ = a.storedImages()
	return status
}

// storedImages are the images in the node's store, as the node's status lists them.
func (a *Agent) storedImages() ([]corev1.ContainerImage, error) {
	images, err := a.puller.Store.Images()
	if err != nil {
		return nil, err
	}
	var out []corev1.ContainerImage
	for _, img := range images {
		out = append(out, corev1.ContainerImage{Names: []string{img.Ref}, SizeBytes: img.Descriptor.Size})
	}
	return out, nil
}

// publishImages brings the node's status.images up to the store when a pull changed
// it, before the pod that pulled is told: so whoever reads the node after a pod's
// status (explain pull, the scheduler's image locality) sees what the pods see,
// rather than the store as it was at the last status report, up to a minute ago.
func (a *Agent) publishImages(ctx context.Context) {
	a.imagesMu.Lock()
	defer a.imagesMu.Unlock()
	images, err := a.storedImages()
	if err != nil || equality.Semantic.DeepEqual(images, a.published) {
		return
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"images": images}})
	if err != nil {
		return
	}
	if _, err := a.cfg.Client.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "pullgate-node"}, "status"); err != nil {
		a.cfg.Log.Warn("the node's image list could not be updated; the next status report will", "node", a.cfg.NodeName, "err", err)
		return
	}
	a.published = images
}

// register creates the Node, or brings an existing one's status up to date.
func (a *Agent) register(ctx context.Context) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{
			corev1.LabelHostname: a.cfg.NodeName, corev1.LabelOSStable: "linux", corev1.LabelArchStable: runtime.GOARCH,
			LabelPullOnly: "true",
		}},
	}
	created, err := nodes.Create(ctx, node, metav1.CreateOptions{FieldManager: "pullgate-node"})
	switch {
	case apierrors.IsAlreadyExists(err):
		if created, err = nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
		}
	case err != nil:
		return fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
	}
	if err := a.updateStatus(ctx, created); err != nil {
		return err
	}
	return a.renewLease(ctx, created)
}

// updateStatus patches the node's status only: a kubelet may not touch its own
// taints (NodeRestriction), which node lifecycle changes under it.
func (a *Agent) updateStatus(ctx context.Context, node *corev1.Node) error {
	fresh := a.nodeStatus()
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			fresh.Conditions[0].LastTransitionTime = c.LastTransitionTime
		}
	}
	patch, err := json.Marshal(map[string]any{"status": fresh})
	if err != nil {
		return err
	}
	if _, err := a.cfg.Client.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "pullgate-node"}, "status"); err != nil {
		return fmt.Errorf("node %s status: %w", a.cfg.NodeName, err)
	}
	a.imagesMu.Lock()
	a.published = fresh.Images
	a.imagesMu.Unlock()
	return nil
}

// renewLease renews the node's Lease in kube-node-lease, as a kubelet does.
func (a *Agent) renewLease(ctx context.Context, node *corev1.Node) error {
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.cfg.NodeName), LeaseDurationSeconds: ptr.To(int32(leaseDuration.Seconds())), RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	lease.Spec.HolderIdentity = ptr.To(a.cfg.NodeName)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration.Seconds()))
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// heartbeat renews the lease every leaseRenew and reports the node's status every
// statusInterval, until ctx ends.
func (a *Agent) heartbeat(ctx context.Context) {
	tick := time.NewTicker(leaseRenew)
	defer tick.Stop()
	lastStatus := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		node, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			err = a.register(ctx)
		} else if err == nil {
			err = a.renewLease(ctx, node)
			if err == nil && time.Since(lastStatus) >= statusInterval {
				err = a.updateStatus(ctx, node)
				lastStatus = time.Now()
			}
		}
		if err != nil && ctx.Err() == nil {
			a.cfg.Log.Warn("node heartbeat failed", "node", a.cfg.NodeName, "err", err)
		}
		a.gc()
	}
}

// gc drops the back-off state of failures long past their back-off.
func (a *Agent) gc() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.backoff.GC()
	for key, f := range a.failures {
		if time.Since(f.at) > 2*backoffMax {
			delete(a.failures, key)
		}
	}
}

// memoryBytes is the machine's memory, from /proc/meminfo.
func memoryBytes() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err != nil {
		return 0
	}
	return kb << 10
}
