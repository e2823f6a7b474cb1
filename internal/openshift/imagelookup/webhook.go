package imagelookup

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/controller/imagetrigger"
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

// Webhook is the mutating admission webhook that resolves image names, and sets
// the images a workload's image-change triggers name when it is created or updated
// (a Job's can be set only then: its pod template cannot change afterwards).
type Webhook struct {
	Resolver Resolver
	// Triggers, when set, resolves image.openshift.io/triggers.
	Triggers *imagetrigger.Resolver
	// Caller, when set, is the common name the caller's verified TLS client
	// certificate must have (the API server's): anyone else learning which digest a
	// project's names resolve to would learn what RBAC may not let them read.
	Caller string
	Log    *slog.Logger
}

type patchOp = imagetrigger.PatchOp

// ServeHTTP answers an AdmissionReview: allowed always, with a JSON patch of the
// images it resolved.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Caller != "" && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.VerifiedChains[0][0].Subject.CommonName != h.Caller) {
		http.Error(w, "only the API server may call this webhook", http.StatusForbidden)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "want an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return
	}
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	ops, warnings, err := h.patch(req)
	resp.Warnings = warnings
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

// patch resolves every container's image of the request's object: by its
// triggers, else by name. What a trigger cannot follow is a warning to the client.
func (h *Webhook) patch(req *admissionv1.AdmissionRequest) ([]patchOp, []string, error) {
	path, ok := podSpecPaths[req.Kind.Kind]
	if !ok {
		return nil, nil, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return nil, nil, err
	}
	all := wantsAll(obj) || len(path) > 1 && wantsAll(dig(obj, path[:len(path)-1]...))
	spec := dig(obj, path...)
	if spec == nil {
		return nil, nil, fmt.Errorf("no pod spec at %s", strings.Join(path, "."))
	}
	ops, warnings, err := h.triggered(req, obj, spec, strings.Join(path, "."))
	if err != nil {
		return nil, nil, err
	}
	triggered := map[string]bool{}
	for _, op := range ops {
		triggered[op.Path] = true
	}
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := spec[field].([]any)
		for i, c := range list {
			container, _ := c.(map[string]any)
			image, _ := container["image"].(string)
			pointer := fmt.Sprintf("/%s/%s/%d/image", strings.Join(path, "/"), field, i)
			if resolved, ok := h.Resolver.Resolve(req.Namespace, image, all); ok && resolved != image && !triggered[pointer] {
				ops = append(ops, patchOp{Op: "replace", Path: pointer, Value: resolved})
			}
		}
	}
	return ops, warnings, nil
}

// triggered is the patch of a workload's image.openshift.io/triggers (none for a
// bare pod), and why a trigger cannot be followed. Only when the triggers are new —
// the workload created, or its annotation written (oc set triggers): every other
// update is the trigger controller's to follow, and a stream informer here a moment
// behind the controller's would otherwise set an image back.
func (h *Webhook) triggered(req *admissionv1.AdmissionRequest, obj, spec map[string]any, specPath string) ([]patchOp, []string, error) {
	triggers := triggersOf(obj)
	if h.Triggers == nil || !triggerKinds[req.Kind.Kind] || triggers == "" {
		return nil, nil, nil
	}
	if req.Operation == admissionv1.Update {
		var old map[string]any
		if err := json.Unmarshal(req.OldObject.Raw, &old); err == nil && triggersOf(old) == triggers {
			return nil, nil, nil
		}
	}
	annotations := map[string]string{imagetrigger.Annotation: triggers}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	var podSpec corev1.PodSpec
	if err := json.Unmarshal(raw, &podSpec); err != nil {
		return nil, nil, err
	}
	plan := h.Triggers.Plan(req.Namespace, annotations, &podSpec, specPath)
	return plan.Patch, plan.Problems, nil
}

// triggerKinds are the kinds whose triggers are followed: the controller's, and Jobs
// (here only). Not a ReplicaSet, which inherits its Deployment's annotations and must
// keep its Deployment's template, nor a pod.
var triggerKinds = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true, "CronJob": true, "Job": true}

// triggersOf is obj's image.openshift.io/triggers annotation.
func triggersOf(obj map[string]any) string {
	v, _ := dig(obj, "metadata", "annotations")[imagetrigger.Annotation].(string)
	return v
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
