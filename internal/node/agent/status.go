package agent

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConditionImagesPulled is True once every image of the pod is on the node.
const ConditionImagesPulled corev1.PodConditionType = "ImagesPulled"

var metaUpdate = metav1.UpdateOptions{FieldManager: "pullgate-node"}

// podStatus is the pod's status with this node's view of its containers: each one
// waiting (pulled, or why not), and the ImagesPulled condition. The phase stays
// Pending: no container ever runs here.
func (a *Agent) podStatus(pod *corev1.Pod, states []containerState) corev1.PodStatus {
	status := *pod.Status.DeepCopy()
	status.Phase = corev1.PodPending
	status.InitContainerStatuses, status.ContainerStatuses = nil, nil
	inits := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		inits[c.Name] = true
	}
	pulled := 0
	var problems []string
	reason := ""
	for _, s := range states {
		started := false
		cs := corev1.ContainerStatus{
			Name: s.name, Image: s.image, ImageID: s.imageID, Started: &started,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: s.reason, Message: s.message}},
		}
		if inits[s.name] {
			status.InitContainerStatuses = append(status.InitContainerStatuses, cs)
		} else {
			status.ContainerStatuses = append(status.ContainerStatuses, cs)
		}
		if s.pulled() {
			pulled++
			continue
		}
		if reason == "" {
			reason = s.reason
		}
		problems = append(problems, fmt.Sprintf("%s: %s: %s", s.name, s.reason, s.message))
	}
	cond := corev1.PodCondition{Type: ConditionImagesPulled, Status: corev1.ConditionTrue, Reason: "AllImagesPulled",
		Message: fmt.Sprintf("all %d images are on node %s, which pulls images and runs no containers", len(states), a.cfg.NodeName)}
	if pulled < len(states) {
		cond.Status, cond.Reason = corev1.ConditionFalse, reason
		cond.Message = fmt.Sprintf("%d of %d images pulled; %s", pulled, len(states), strings.Join(problems, "; "))
	}
	cond.ObservedGeneration = pod.Generation
	setCondition(&status, cond)
	return status
}

// setCondition replaces the condition of cond's type, keeping its transition time
// when its status does not change.
func setCondition(status *corev1.PodStatus, cond corev1.PodCondition) {
	now := metav1.Now()
	for i := range status.Conditions {
		if status.Conditions[i].Type != cond.Type {
			continue
		}
		cond.LastTransitionTime = status.Conditions[i].LastTransitionTime
		if status.Conditions[i].Status != cond.Status {
			cond.LastTransitionTime = now
		}
		status.Conditions[i] = cond
		return
	}
	cond.LastTransitionTime = now
	status.Conditions = append(status.Conditions, cond)
}

// statusEqual compares what sync writes, ignoring times.
func statusEqual(a, b corev1.PodStatus) bool {
	strip := func(s corev1.PodStatus) corev1.PodStatus {
		s = *s.DeepCopy()
		for i := range s.Conditions {
			s.Conditions[i].LastTransitionTime = metav1.Time{}
			s.Conditions[i].LastProbeTime = metav1.Time{}
		}
		return s
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}
