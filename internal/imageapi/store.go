package imageapi

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Streams reads and writes ImageStreams.
type Streams struct {
	Client dynamic.Interface
}

// RecordTag makes namespace/name exist and points tag at digest, keeping the tag's
// history (newest first, at most MaxTagHistory). A push of an untagged manifest
// (by digest) passes an empty tag and only makes sure the stream exists.
func (s Streams) RecordTag(ctx context.Context, namespace, name, repository, tag, digest, mediaType string) error {
	res := s.Client.Resource(GVR).Namespace(namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			obj, err = res.Create(ctx, toUnstructured(&ImageStream{
				TypeMeta:   metav1.TypeMeta{APIVersion: Group + "/" + Version, Kind: Kind},
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			}), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(GVR.GroupResource(), name, err)
			}
		}
		if err != nil {
			return err
		}
		var is ImageStream
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &is); err != nil {
			return fmt.Errorf("imagestream %s/%s: %w", namespace, name, err)
		}
		if !applyTag(&is.Status, repository, tag, digest, mediaType, time.Now()) {
			return nil
		}
		_, err = res.UpdateStatus(ctx, toUnstructured(&is), metav1.UpdateOptions{})
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

func toUnstructured(is *ImageStream) *unstructured.Unstructured {
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(is)
	return &unstructured.Unstructured{Object: m}
}
