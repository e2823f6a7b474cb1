package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Waiting reasons, as the kubelet reports them, and pullgate's own for a pulled image.
const (
	ReasonErrImagePull      = "ErrImagePull"
	ReasonImagePullBackOff  = "ImagePullBackOff"
	ReasonInvalidImageName  = "InvalidImageName"
	ReasonErrImageNeverPull = "ErrImageNeverPull"
	// ReasonPullOnly is the waiting reason of a container whose image is pulled: this
	// node runs no containers.
	ReasonPullOnly = "PullOnlyNode"
)

// pullTimeout bounds one image pull.
const pullTimeout = 15 * time.Minute

// containerState is the outcome for one container's image.
type containerState struct {
	name, image, imageID string
	reason, message      string
	retryAfter           time.Duration
}

func (s containerState) pulled() bool { return s.reason == ReasonPullOnly }

// sync brings one pod's images and status up to date. It is level-triggered: what is
// already pulled for the pod is read from the pod's own status, so a restarted agent
// neither pulls again nor repeats events.
func (a *Agent) sync(ctx context.Context, key string) (time.Duration, error) {
	namespace, podName, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	obj, exists, err := a.pods.GetIndexer().GetByKey(key)
	if err != nil {
		return 0, err
	}
	if !exists {
		a.forget(namespace, podName)
		return 0, nil
	}
	pod := obj.(*corev1.Pod)
	a.mu.Lock()
	a.uids[key] = string(pod.UID)
	a.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		return 0, a.confirmDeletion(ctx, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}
	creds := &podCredentials{agent: a, pod: pod}
	var states []containerState
	var retry time.Duration
	for _, c := range allContainers(pod) {
		s := a.containerImage(ctx, pod, c, creds)
		for _, bad := range a.puller.Store.TakeCorruptions() {
			a.event(pod, c, corev1.EventTypeWarning, "CorruptBlobReplaced",
				fmt.Sprintf("Blob %s on this node was corrupt (%s): it was removed, and the image is pulled again", bad.Blob, bad.Reason))
		}
		states = append(states, s)
		if s.retryAfter > 0 && (retry == 0 || s.retryAfter < retry) {
			retry = s.retryAfter
		}
	}
	status := a.podStatus(pod, states)
	if statusEqual(pod.Status, status) {
		return retry, nil
	}
	updated := pod.DeepCopy()
	updated.Status = status
	if _, err := a.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metaUpdate); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("updating the status of pod %s: %w", key, err)
	}
	return retry, nil
}

type container struct {
	corev1.Container
	fieldPath string
}

func allContainers(pod *corev1.Pod) []container {
	var out []container
	for _, c := range pod.Spec.InitContainers {
		out = append(out, container{c, fmt.Sprintf("spec.initContainers{%s}", c.Name)})
	}
	for _, c := range pod.Spec.Containers {
		out = append(out, container{c, fmt.Sprintf("spec.containers{%s}", c.Name)})
	}
	return out
}

// containerImage makes sure one container's image is on the node and usable by the pod.
func (a *Agent) containerImage(ctx context.Context, pod *corev1.Pod, c container, creds *podCredentials) containerState {
	s := containerState{name: c.Name, image: c.Image}
	if prev := previousStatus(pod, c.Name); prev != nil && prev.Image == c.Image && prev.ImageID != "" &&
		prev.State.Waiting != nil && prev.State.Waiting.Reason == ReasonPullOnly {
		s.imageID, s.reason, s.message = prev.ImageID, ReasonPullOnly, prev.State.Waiting.Message
		return s
	}
	// Read once, here, where the image enters; everything below takes the type.
	img, err := credentials.ParseImage(c.Image)
	if err != nil {
		s.reason = ReasonInvalidImageName
		s.message = fmt.Sprintf("Failed to apply default image tag %q: couldn't parse image name %q: %v", c.Image, c.Image, err)
		a.event(pod, c, corev1.EventTypeWarning, "InspectFailed", s.message)
		a.metrics.failure(ReasonInvalidImageName)
		return s
	}
	key := string(pod.UID) + "/" + c.Image
	cached, present := a.puller.Store.Lookup(img.Ref.Name())

	if c.ImagePullPolicy == corev1.PullNever && !present {
		s.reason = ReasonErrImageNeverPull
		s.message = fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		a.event(pod, c, corev1.EventTypeWarning, ReasonErrImageNeverPull, s.message)
		return s
	}
	if wait, inBackoff := a.inBackoff(pod, c, key, &s); inBackoff {
		s.retryAfter = wait
		return s
	}
	if present && c.ImagePullPolicy != corev1.PullAlways {
		return a.usePresent(ctx, pod, c, creds, key, img, cached, s)
	}
	return a.pull(ctx, pod, c, creds, key, img, s)
}

// usePresent lets a pod use an image already on the node only if it was pulled
// without credentials, or with credentials this pod holds (the same secret with the
// same content), or if the pod's own credentials can pull it now (KEP-2535). An
// image of the integrated registry goes further: RBAC must still let the pod's
// service account (or, for an image pulled anonymously, anyone) pull it, else the
// registry is asked again with the pod's own credentials.
func (a *Agent) usePresent(ctx context.Context, pod *corev1.Pod, c container, creds *podCredentials, key string, image credentials.Image, img imagepull.Image, s containerState) containerState {
	req := creds.request(ctx, image)
	record := a.puller.Store.Recorded(img.Descriptor.Digest)
	if record.Allows(creds.ids(ctx)) && a.mayStillPull(ctx, pod, image.Ref, record) && a.stillServed(ctx, image.Ref, img.Descriptor.Digest.String()) {
		a.metrics.cacheHit()
		a.event(pod, c, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", c.Image))
		return a.pulledState(s, image.Ref, img.Descriptor.Digest.String())
	}
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	used, err := a.puller.Verify(pctx, req, img.Descriptor.Digest)
	if err != nil {
		perr := asPullError(err)
		msg := fmt.Sprintf("image %s is on this node, but this pod's credentials cannot pull it now, so it may not use it: %s", img.Ref, err)
		return a.failed(pod, c, key, s, perr, msg, creds)
	}
	a.succeeded(key)
	a.metrics.cacheHit()
	a.event(pod, c, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine and can be accessed by the pod (checked with %s)", c.Image, used.Description))
	return a.pulledState(s, image.Ref, img.Descriptor.Digest.String())
}

// mayStillPull asks RBAC whether the pod may still pull an image of the integrated
// registry; any other image, or no authorizer, passes.
func (a *Agent) mayStillPull(ctx context.Context, pod *corev1.Pod, ref name.Reference, record imagepull.PullRecord) bool {
	if a.cfg.PullAuthorizer == nil || !a.cfg.RegistryHosts.Holds(ref) {
		return true
	}
	repo := ref.Context().RepositoryStr()
	users := []rbacauthz.User{rbacauthz.ServiceAccountUser(pod.Namespace, serviceAccountName(pod))}
	if record.Anonymous {
		users = append(users, tokenauth.Anonymous)
	}
	for _, u := range users {
		if ok, err := a.cfg.PullAuthorizer.MayPull(ctx, u, repo); err == nil && ok {
			return true
		}
	}
	return false
}

// stillServed says whether the integrated registry still serves manifest digest in
// image's repository, as its ImageStream says (no registry round trip): a namespace
// deleted and made again, or a tag deleted and pruned, does not leave the old
// tenant's image to the new one's pods. Any other image, or no Streams, passes;
// an image refused here is checked with the pod's own credentials at the registry.
func (a *Agent) stillServed(ctx context.Context, ref name.Reference, digest string) bool {
	if a.cfg.Streams == nil || !a.cfg.RegistryHosts.Holds(ref) {
		return true
	}
	namespace, stream, ok := tokenauth.SplitRepository(ref.Context().RepositoryStr())
	if !ok {
		return false
	}
	history, err := a.cfg.Streams.History(ctx, namespace, stream)
	return err == nil && slices.Contains(history, digest)
}

func (a *Agent) pull(ctx context.Context, pod *corev1.Pod, c container, creds *podCredentials, key string, image credentials.Image, s containerState) containerState {
	a.event(pod, c, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
	req := creds.request(ctx, image)
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	begin := time.Now()
	res, err := a.puller.Pull(pctx, req)
	took := time.Since(begin)
	if err != nil {
		perr := asPullError(err)
		a.metrics.pulled(took, 0, perr)
		return a.failed(pod, c, key, s, perr, err.Error(), creds)
	}
	a.succeeded(key)
	a.metrics.pulled(took, res.Transferred, nil)
	a.publishImages(ctx)
	with := res.Used.Description
	if res.TokenHost != "" {
		with += ", token from " + res.TokenHost
	}
	a.event(pod, c, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s (%s including waiting). Image size: %d bytes. Transferred: %d bytes. Credential: %s.",
		c.Image, took.Round(time.Millisecond), took.Round(time.Millisecond), res.Size, res.Transferred, with))
	return a.pulledState(s, image.Ref, res.Digest.String())
}

func (a *Agent) pulledState(s containerState, ref name.Reference, digest string) containerState {
	s.imageID = ref.Context().Name() + "@" + digest
	s.reason = ReasonPullOnly
	s.message = fmt.Sprintf("Image is on node %s; a pullgate node pulls images and does not run containers", a.cfg.NodeName)
	return s
}

// failed records a failed pull and starts or extends its back-off.
func (a *Agent) failed(pod *corev1.Pod, c container, key string, s containerState, perr *imagepull.Error, msg string, creds *podCredentials) containerState {
	if notes := creds.notes(); notes != "" {
		msg += " (" + notes + ")"
	}
	reason := imagepull.ReasonRegistryError
	if perr != nil {
		reason = perr.Reason
	}
	now := time.Now()
	a.mu.Lock()
	a.backoff.Next(key, now)
	wait := a.backoff.Get(key)
	a.failures[key] = &pullFailure{at: now, reason: reason, msg: msg}
	a.mu.Unlock()
	a.event(pod, c, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %s", c.Image, msg))
	a.event(pod, c, corev1.EventTypeWarning, "Failed", "Error: "+ReasonErrImagePull)
	s.reason, s.message, s.retryAfter = ReasonErrImagePull, msg, wait
	return s
}

func (a *Agent) succeeded(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.backoff.Reset(key)
	delete(a.failures, key)
}

// inBackoff reports an image whose last pull failed less than its back-off ago, as
// ImagePullBackOff with that failure's message.
func (a *Agent) inBackoff(pod *corev1.Pod, c container, key string, s *containerState) (time.Duration, bool) {
	a.mu.Lock()
	f := a.failures[key]
	var wait time.Duration
	if f != nil {
		wait = time.Until(f.at.Add(a.backoff.Get(key)))
	}
	first := f != nil && !f.backoffSeen
	if f != nil && wait > 0 {
		f.backoffSeen = true
	}
	a.mu.Unlock()
	if f == nil || wait <= 0 {
		return 0, false
	}
	s.reason = ReasonImagePullBackOff
	s.message = fmt.Sprintf("Back-off pulling image %q: %s; for the cause and the command that fixes it, run: pullgate explain pull -n %s %s", c.Image, f.msg, pod.Namespace, pod.Name)
	if first {
		a.event(pod, c, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off pulling image %q", c.Image))
	}
	return wait, true
}

// confirmDeletion ends a pod's graceful deletion, as the kubelet does once the pod's
// containers have stopped: this node runs none, so at once (grace 0, for this pod's
// UID only).
func (a *Agent) confirmDeletion(ctx context.Context, pod *corev1.Pod) error {
	err := a.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or another pod of that name
	}
	return err
}

// forget drops what the agent keeps for a pod that is gone: its images' back-off
// and last failures, and the tokens requested for it.
func (a *Agent) forget(namespace, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	uid, ok := a.uids[namespace+"/"+name]
	if !ok {
		return
	}
	if a.cfg.CredentialProviders != nil {
		a.cfg.CredentialProviders.Forget(types.UID(uid))
	}
	delete(a.uids, namespace+"/"+name)
	for key := range a.failures {
		if strings.HasPrefix(key, uid+"/") {
			delete(a.failures, key)
			a.backoff.Reset(key)
		}
	}
}

func previousStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func (a *Agent) event(pod *corev1.Pod, c container, eventType, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, FieldPath: c.fieldPath}
	a.recorder.Event(ref, eventType, reason, message)
}

func (a *Agent) podEvent(pod *corev1.Pod, eventType, reason, message string) {
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	a.recorder.Event(ref, eventType, reason, message)
}

func asPullError(err error) *imagepull.Error {
	var perr *imagepull.Error
	if errors.As(err, &perr) {
		return perr
	}
	return &imagepull.Error{Reason: imagepull.ReasonRegistryError, Message: err.Error(), Err: err}
}
