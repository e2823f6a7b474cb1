package cli

import (
	"context"
	"fmt"
	"strings"

	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// imageAPI is image.openshift.io/v1, which `pullgate up` serves: the tag and
// import-image commands call it as oc does, so both work the same.
type imageAPI struct{ client dynamic.Interface }

func imageResource(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: resource}
}

func (a imageAPI) stream(ctx context.Context, ns, name string) (*imagev1.ImageStream, error) {
	u, err := a.client.Resource(imageResource("imagestreams")).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var is imagev1.ImageStream
	return &is, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is)
}

// create posts obj (ImageStreamTag or ImageStreamImport) and reads the answer into out.
func (a imageAPI) create(ctx context.Context, resource, ns string, obj, out any) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	got, err := a.client.Resource(imageResource(resource)).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(got.Object, out)
}

// latestImage is the image tag of is points at now.
func latestImage(is *imagev1.ImageStream, tag string) (imagev1.TagEvent, bool) {
	for _, t := range is.Status.Tags {
		if t.Tag == tag && len(t.Items) > 0 {
			return t.Items[0], true
		}
	}
	return imagev1.TagEvent{}, false
}

// streamRef is [namespace/]stream[:tag|@digest], as oc names streams' tags.
type streamRef struct {
	Namespace, Stream, Tag, Digest string
}

func parseStreamRef(s, defaultNamespace string) (streamRef, error) {
	r := streamRef{Namespace: defaultNamespace}
	rest := s
	if ns, after, ok := strings.Cut(rest, "/"); ok {
		if strings.Contains(after, "/") || ns == "" {
			return streamRef{}, fmt.Errorf("%q: want [namespace/]stream:tag", s)
		}
		r.Namespace, rest = ns, after
	}
	if stream, dgst, ok := strings.Cut(rest, "@"); ok {
		r.Stream, r.Digest = stream, dgst
	} else {
		r.Stream, r.Tag, _ = strings.Cut(rest, ":")
	}
	if r.Stream == "" {
		return streamRef{}, fmt.Errorf("%q: want [namespace/]stream:tag", s)
	}
	return r, nil
}

func (r streamRef) String() string {
	s := r.Namespace + "/" + r.Stream
	if r.Digest != "" {
		return s + "@" + r.Digest
	}
	return s + ":" + r.Tag
}

// referencePolicy is oc's --reference-policy.
func referencePolicy(v string) (imagev1.TagReferencePolicy, error) {
	switch v {
	case "", "source":
		return imagev1.TagReferencePolicy{Type: imagev1.SourceTagReferencePolicy}, nil
	case "local":
		return imagev1.TagReferencePolicy{Type: imagev1.LocalTagReferencePolicy}, nil
	}
	return imagev1.TagReferencePolicy{}, fmt.Errorf("--reference-policy %q: want source or local", v)
}

func importMode(v string) (imagev1.ImportModeType, error) {
	switch imagev1.ImportModeType(v) {
	case "", imagev1.ImportModeLegacy:
		return imagev1.ImportModeLegacy, nil
	case imagev1.ImportModePreserveOriginal:
		return imagev1.ImportModePreserveOriginal, nil
	}
	return "", fmt.Errorf("--import-mode %q: want Legacy or PreserveOriginal", v)
}
