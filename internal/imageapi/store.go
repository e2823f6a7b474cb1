package imageapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Streams reads and writes ImageStreams through the API.
type Streams struct {
	Client dynamic.Interface
}

// ErrStreamReplaced means the ImageStream a push began with was deleted (and maybe
// made again) before the push ended.
var ErrStreamReplaced = errors.New("the imagestream was deleted during the push")

// Get returns the UID of ImageStream namespace/name, read from the API (not a
// cache); exists is false when there is none.
func (s Streams) Get(ctx context.Context, namespace, name string) (uid string, exists bool, err error) {
	obj, err := s.Client.Resource(GVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(obj.GetUID()), true, nil
}

// Ensure returns the UID of ImageStream namespace/name, making it (pointing at
// repository, host/namespace/path) when there is none; created says whether this call
// made it. The namespace must exist: its absence is a NotFound error.
func (s Streams) Ensure(ctx context.Context, namespace, name, repository string) (uid string, created bool, err error) {
	_, path, _ := strings.Cut(repository, "/")
	res := s.Client.Resource(GVR).Namespace(namespace)
	for range 3 {
		if uid, exists, err := s.Get(ctx, namespace, name); err != nil || exists {
			return uid, false, err
		}
		obj, err := res.Create(ctx, toUnstructured(&ImageStream{
			TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: Kind},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{AnnotationRepository: path}},
		}), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // made by another push a moment ago
		}
		if err != nil {
			return "", false, err
		}
		is, err := fromUnstructured(obj)
		if err != nil {
			return "", false, err
		}
		is.Status.DockerImageRepository = repository
		if _, err := res.UpdateStatus(ctx, toUnstructured(is), metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return "", false, err
		}
		return string(obj.GetUID()), true, nil
	}
	return "", false, fmt.Errorf("imagestream %s/%s: made and deleted again while being made", namespace, name)
}

// RecordTag points tag at digest in ImageStream namespace/name, whose UID must be uid,
// keeping the tag's history (newest first, at most MaxTagHistory). A stream that is
// gone or was made again is ErrStreamReplaced: its tags are not this push's.
func (s Streams) RecordTag(ctx context.Context, namespace, name, uid, repository, tag, digest, mediaType string) error {
	return s.update(ctx, namespace, name, uid, func(st *ImageStreamStatus) bool {
		return applyTag(st, repository, tag, digest, mediaType, time.Now())
	})
}

// update applies change to the status of ImageStream namespace/name (of UID uid),
// retrying on conflicts; change reports whether it changed anything.
func (s Streams) update(ctx context.Context, namespace, name, uid string, change func(*ImageStreamStatus) bool) error {
	res := s.Client.Resource(GVR).Namespace(namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || err == nil && string(obj.GetUID()) != uid {
			return fmt.Errorf("imagestream %s/%s: %w", namespace, name, ErrStreamReplaced)
		}
		if err != nil {
			return err
		}
		is, err := fromUnstructured(obj)
		if err != nil {
			return err
		}
		if !change(&is.Status) {
			return nil
		}
		_, err = res.UpdateStatus(ctx, toUnstructured(is), metav1.UpdateOptions{})
		return err
	})
}

// applyTag updates status and reports whether anything changed.
func applyTag(st *ImageStreamStatus, repository, tag, digest, mediaType string, now time.Time) bool {
	changed := st.DockerImageRepository != repository
	st.DockerImageRepository = repository
	if tag == "" {
		return changed
	}
	event := TagEvent{Created: metav1.NewTime(now.UTC().Truncate(time.Second)), Digest: digest, MediaType: mediaType}
	for i := range st.Tags {
		if st.Tags[i].Tag != tag {
			continue
		}
		if len(st.Tags[i].Items) > 0 && st.Tags[i].Items[0].Digest == digest {
			return changed
		}
		items := append([]TagEvent{event}, st.Tags[i].Items...)
		if len(items) > MaxTagHistory {
			items = items[:MaxTagHistory]
		}
		st.Tags[i].Items = items
		return true
	}
	st.Tags = append(st.Tags, NamedTagEventList{Tag: tag, Items: []TagEvent{event}})
	return true
}

func fromUnstructured(obj *unstructured.Unstructured) (*ImageStream, error) {
	var is ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &is); err != nil {
		return nil, fmt.Errorf("imagestream %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return &is, nil
}

func toUnstructured(is *ImageStream) *unstructured.Unstructured {
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(is)
	return &unstructured.Unstructured{Object: m}
}
