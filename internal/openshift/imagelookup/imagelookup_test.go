package imagelookup

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"pullgate.dev/pullgate/internal/controller/imagetrigger"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

type streams map[string]*imageapi.ImageStream

func (s streams) Stream(ns, name string) (*imageapi.ImageStream, bool) {
	is, ok := s[ns+"/"+name]
	return is, ok
}

func testStreams() streams {
	app := &imageapi.ImageStream{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "p"}}
	app.Spec.LookupPolicy.Local = true
	app.Status.DockerImageRepository = "reg:5000/p/app"
	app.Status.Tags = []imageapi.NamedTagEventList{
		{Tag: "v1", Items: []imageapi.TagEvent{{Digest: "sha256:new"}, {Digest: "sha256:old"}}},
		{Tag: "ext", Items: []imageapi.TagEvent{{Digest: "sha256:e", DockerImageReference: "quay.io/org/tool@sha256:e"}}},
	}
	closed := &imageapi.ImageStream{ObjectMeta: metav1.ObjectMeta{Name: "closed", Namespace: "p"}}
	closed.Status.Tags = []imageapi.NamedTagEventList{{Tag: "latest", Items: []imageapi.TagEvent{{Digest: "sha256:c"}}}}
	return streams{"p/app": app, "p/closed": closed}
}

func TestResolve(t *testing.T) {
	r := Resolver{Streams: testStreams(), RegistryHost: "reg:5000"}
	for _, tc := range []struct {
		image string
		all   bool
		want  string
	}{
		{"app:v1", false, "reg:5000/p/app@sha256:new"},
		{"app@sha256:old", false, "reg:5000/p/app@sha256:old"},
		{"app:ext", false, "quay.io/org/tool@sha256:e"},
		{"app", false, ""},                             // no latest tag
		{"app:v9", false, ""},                          // no such tag
		{"other/app:v1", false, ""},                    // another registry's
		{"closed", false, ""},                          // lookups not allowed
		{"closed", true, "reg:5000/p/closed@sha256:c"}, // resolve-names
		{"missing:v1", true, ""},
	} {
		got, ok := r.Resolve("p", tc.image, tc.all)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s (all %v): %q %v, want %q", tc.image, tc.all, got, ok, tc.want)
		}
	}
}

func review(t *testing.T, h *Webhook, kind, namespace string, obj any) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, _ := json.Marshal(obj)
	body, _ := json.Marshal(admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Kind: kind}, Namespace: namespace, Object: runtime.RawExtension{Raw: raw}}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/resolve", bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil || !out.Response.Allowed || out.Response.UID != "u" {
		t.Fatalf("review: %v %s", err, w.Body)
	}
	return out.Response
}

// A Deployment's template resolves its containers that name a stream's tag, and
// leaves the others; the annotation resolves a stream without lookupPolicy.local.
func TestWebhookPatchesTemplates(t *testing.T) {
	h := &Webhook{Resolver: Resolver{Streams: testStreams(), RegistryHost: "reg:5000"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	deploy := map[string]any{"metadata": map[string]any{"name": "x"}, "spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{ResolveNamesAnnotation: "*"}},
		"spec": map[string]any{"initContainers": []any{map[string]any{"name": "i", "image": "closed"}},
			"containers": []any{map[string]any{"name": "a", "image": "app:v1"}, map[string]any{"name": "b", "image": "busybox"}}}}}}
	resp := review(t, h, "Deployment", "p", deploy)
	want := `[{"op":"replace","path":"/spec/template/spec/initContainers/0/image","value":"reg:5000/p/closed@sha256:c"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"reg:5000/p/app@sha256:new"}]`
	if string(resp.Patch) != want {
		t.Errorf("patch %s\nwant  %s", resp.Patch, want)
	}
	cron := map[string]any{"spec": map[string]any{"jobTemplate": map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
		"containers": []any{map[string]any{"name": "a", "image": "app:v1"}}}}}}}}
	if resp := review(t, h, "CronJob", "p", cron); string(resp.Patch) != `[{"op":"replace","path":"/spec/jobTemplate/spec/template/spec/containers/0/image","value":"reg:5000/p/app@sha256:new"}]` {
		t.Errorf("cronjob patch %s", resp.Patch)
	}
	pod := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "a", "image": "nginx:1"}}}}
	if resp := review(t, h, "Pod", "p", pod); resp.Patch != nil {
		t.Errorf("a pod naming no stream was patched: %s", resp.Patch)
	}
}

type allowAll struct{}

func (allowAll) Allowed(rbacauthz.User, rbacauthz.Request) (bool, string) { return true, "" }

type denyAll struct{}

func (denyAll) Allowed(rbacauthz.User, rbacauthz.Request) (bool, string) { return false, "" }

// A Job's triggers are set when it is created (its template cannot change later),
// over a name lookup of the same container; a trigger that cannot be followed is a
// warning to the client, and the object is admitted.
func TestWebhookSetsTriggeredImagesAtCreation(t *testing.T) {
	job := func() map[string]any {
		return map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{imagetrigger.Annotation: `[{"from":{"kind":"ImageStreamTag","name":"app:v1"},"fieldPath":"spec.template.spec.containers[?(@.name==\"a\")].image"}]`}},
			"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]any{ResolveNamesAnnotation: "*"}},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "a", "image": "closed"}}}}}}
	}
	h := &Webhook{Resolver: Resolver{Streams: testStreams(), RegistryHost: "reg:5000"},
		Triggers: &imagetrigger.Resolver{Streams: testStreams(), Authz: allowAll{}, RegistryHost: "reg:5000"},
		Log:      slog.New(slog.DiscardHandler)}
	resp := review(t, h, "Job", "p", job())
	want := `[{"op":"test","path":"/spec/template/spec/containers/0/image","value":"closed"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"reg:5000/p/app@sha256:new"}]`
	if string(resp.Patch) != want || len(resp.Warnings) != 0 {
		t.Errorf("patch %s, warnings %q\nwant  %s", resp.Patch, resp.Warnings, want)
	}
	// A ReplicaSet inherits its Deployment's triggers but keeps its template.
	if resp := review(t, h, "ReplicaSet", "p", job()); strings.Contains(string(resp.Patch), "sha256:new") {
		t.Errorf("a ReplicaSet's inherited triggers were applied: %s", resp.Patch)
	}
	// An update that leaves the triggers as they were is the controller's to follow.
	raw, _ := json.Marshal(job())
	body, _ := json.Marshal(admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Kind: "Deployment"}, Namespace: "p",
		Operation: admissionv1.Update, Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: raw}}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/resolve", bytes.NewReader(body)))
	if strings.Contains(w.Body.String(), "sha256:new") {
		t.Errorf("an update with unchanged triggers set the trigger's image: %s", w.Body)
	}

	h.Triggers.Authz = denyAll{}
	resp = review(t, h, "Job", "p", job())
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "may not pull image stream p/app") {
		t.Errorf("warnings %q", resp.Warnings)
	}
	if string(resp.Patch) != `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"reg:5000/p/closed@sha256:c"}]` {
		t.Errorf("refused trigger: patch %s, want the name lookup alone", resp.Patch)
	}
}

// With Caller set, a request without the API server's verified client certificate
// is refused before it is read.
func TestWebhookAnswersOnlyItsCaller(t *testing.T) {
	h := &Webhook{Resolver: Resolver{Streams: testStreams(), RegistryHost: "reg:5000"}, Caller: "pullgate:apiserver-webhook-client", Log: slog.New(slog.DiscardHandler)}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/resolve", strings.NewReader(`{"request":{"uid":"u","kind":{"kind":"Pod"},"namespace":"p","object":{"spec":{"containers":[{"image":"app:v1"}]}}}}`)))
	if w.Code != 403 || strings.Contains(w.Body.String(), "sha256") {
		t.Errorf("a caller without a certificate: %d %s", w.Code, w.Body)
	}
}
