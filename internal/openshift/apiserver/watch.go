package apiserver

import (
	"encoding/json"
	"net/http"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// watchImageStreams streams the changes of the stored streams as
// image.openshift.io ImageStreams (oc get is -w, informers of oc's clients): the
// stored watch, each object converted.
func (s *Server) watchImageStreams(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := metav1.ListOptions{Watch: true, ResourceVersion: q.Get("resourceVersion"), FieldSelector: q.Get("fieldSelector"), LabelSelector: q.Get("labelSelector"), AllowWatchBookmarks: q.Get("allowWatchBookmarks") == "true"}
	if t, err := strconv.ParseInt(q.Get("timeoutSeconds"), 10, 64); err == nil {
		opts.TimeoutSeconds = &t
	}
	watcher, err := s.Dynamic.Resource(imageapi.GVR).Namespace(r.PathValue("ns")).Watch(r.Context(), opts)
	if err != nil {
		writeStatus(w, err)
		return
	}
	defer watcher.Stop()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-watcher.ResultChan():
			if !ok {
				return
			}
			var obj any = ev.Object
			if u, isStream := ev.Object.(*unstructured.Unstructured); isStream {
				var is imageapi.ImageStream
				if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is) != nil {
					continue
				}
				converted := s.toImageStream(&is)
				obj = converted
			}
			if err := enc.Encode(struct {
				Type   watch.EventType `json:"type"`
				Object any             `json:"object"`
			}{ev.Type, obj}); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}
