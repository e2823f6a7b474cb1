package imageapi

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// Index answers from an informer, with no API round trip, which ImageStreams exist
// and with which UID, and tells a handler when one is deleted.
type Index struct {
	informer cache.SharedIndexInformer
}

// NewIndex watches every ImageStream through client; Run starts it.
func NewIndex(client dynamic.Interface) *Index {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
	return &Index{informer: factory.ForResource(GVR).Informer()}
}

// Run watches until ctx ends; WaitForSync waits for the first list.
func (x *Index) Run(ctx context.Context) { x.informer.Run(ctx.Done()) }

// WaitForSync waits until the index holds every ImageStream.
func (x *Index) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), x.informer.HasSynced) {
		return fmt.Errorf("imagestream informer did not sync: %w", context.Cause(ctx))
	}
	return nil
}

// HasSynced reports whether the index holds every ImageStream.
func (x *Index) HasSynced() bool { return x.informer.HasSynced() }

// UID is the UID of ImageStream namespace/name, if it exists.
func (x *Index) UID(namespace, name string) (string, bool) {
	obj, exists, err := x.informer.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return "", false
	}
	return string(obj.(*unstructured.Unstructured).GetUID()), true
}

// Status is the status of ImageStream namespace/name and its UID, if it exists.
func (x *Index) Status(namespace, name string) (string, ImageStreamStatus, bool) {
	obj, exists, err := x.informer.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return "", ImageStreamStatus{}, false
	}
	is, err := fromUnstructured(obj.(*unstructured.Unstructured))
	if err != nil {
		return "", ImageStreamStatus{}, false
	}
	return string(is.UID), is.Status, true
}

// History lists every digest the tags of ImageStream namespace/name point or pointed
// at (its tag histories), from the informer.
func (x *Index) History(_ context.Context, namespace, name string) ([]string, error) {
	_, status, ok := x.Status(namespace, name)
	if !ok {
		return nil, nil
	}
	return status.History(), nil
}

// OnDelete calls deleted with the repository (namespace/path) and UID of every
// ImageStream deleted from now on (also one missed while the watch was broken).
func (x *Index) OnDelete(deleted func(repository, uid string)) error {
	_, err := x.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				deleted(Repository(u), string(u.GetUID()))
			}
		},
	})
	return err
}

// OnChange calls changed with the namespace and name of every ImageStream added,
// updated or deleted from now on (and of every one there is, once, at the start).
func (x *Index) OnChange(changed func(namespace, name string)) error {
	call := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			changed(u.GetNamespace(), u.GetName())
		}
	}
	_, err := x.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: call, UpdateFunc: func(_, obj any) { call(obj) }, DeleteFunc: call})
	return err
}

// StreamReader reads ImageStreams by name, as an Index does from its informer: what
// the image lookup webhook, the trigger controller and the pull-through read.
type StreamReader interface {
	Stream(namespace, name string) (*ImageStream, bool)
}

// Stream is ImageStream namespace/name, from the informer.
func (x *Index) Stream(namespace, name string) (*ImageStream, bool) {
	obj, exists, err := x.informer.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return nil, false
	}
	is, err := fromUnstructured(obj.(*unstructured.Unstructured))
	return is, err == nil
}
