package imagelookup

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podSpecPaths are where each kind holds its pod spec (and the template whose
// annotations ask for resolve-names).
var podSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// Webhook is the mutating admission webhook that resolves image names.
type Webhook struct {
	Resolver Resolver
	Log      *slog.Logger
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

// ServeHTTP answers an AdmissionReview: allowed always, with a JSON patch of the
// images it resolved.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "want an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return
	}
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	ops, err := h.patch(req)
	if err != nil {
		// Not this webhook's to refuse: the object is admitted as it is.
		h.Log.Warn("image lookup: object not read", "kind", req.Kind.Kind, "namespace", req.Namespace, "name", req.Name, "err", err)
	}
	if len(ops) > 0 {
		patch, _ := json.Marshal(ops)
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp})
}

// patch resolves every container's image of the request's object.
func (h *Webhook) patch(req *admissionv1.AdmissionRequest) ([]patchOp, error) {
	path, ok := podSpecPaths[req.Kind.Kind]
	if !ok {
		return nil, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return nil, err
	}
	all := wantsAll(obj) || len(path) > 1 && wantsAll(dig(obj, path[:len(path)-1]...))
	spec := dig(obj, path...)
	if spec == nil {
		return nil, fmt.Errorf("no pod spec at %s", strings.Join(path, "."))
	}
	var ops []patchOp
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := spec[field].([]any)
		for i, c := range list {
			container, _ := c.(map[string]any)
			image, _ := container["image"].(string)
			if resolved, ok := h.Resolver.Resolve(req.Namespace, image, all); ok && resolved != image {
				ops = append(ops, patchOp{Op: "replace", Path: fmt.Sprintf("/%s/%s/%d/image", strings.Join(path, "/"), field, i), Value: resolved})
			}
		}
	}
	return ops, nil
}

// dig is the object at path in obj, or nil.
func dig(obj map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, ok := obj[p].(map[string]any)
		if !ok {
			return nil
		}
		obj = next
	}
	return obj
}

// wantsAll reports whether obj's annotations ask for every name to be looked up.
func wantsAll(obj map[string]any) bool {
	meta := dig(obj, "metadata", "annotations")
	v, _ := meta[ResolveNamesAnnotation].(string)
	return v == "*"
}
