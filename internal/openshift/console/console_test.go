package console

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

const host = "127.0.0.1:8099"

func testServer(t *testing.T, objects ...runtime.Object) (*Server, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objects...)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{imageapi.GVR: "ImageStreamList"})
	return &Server{client: client, dynamic: dyn, loginToken: "the-token", hosts: []string{host, "localhost:8099"}, RegistryHost: "localhost:5000", Log: slog.Default()}, client
}

func request(h http.Handler, method, target string, body io.Reader, headers map[string]string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://"+host+target, body)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func login(t *testing.T, s *Server) *http.Cookie {
	t.Helper()
	w := request(s.Handler(), "GET", "/login?token=the-token", nil, nil)
	if w.Code != http.StatusSeeOther || len(w.Result().Cookies()) != 1 {
		t.Fatalf("login: %d %v", w.Code, w.Result().Cookies())
	}
	c := w.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v: want HttpOnly and SameSite=Strict", c)
	}
	return c
}

// Only the holder of the printed URL gets in, once; another host name (DNS
// rebinding) and another site's forms are refused; no CORS header is sent.
func TestOnlyTheURLsHolderDrivesTheConsole(t *testing.T) {
	s, client := testServer(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b"}})
	h := s.Handler()
	if w := request(h, "GET", "/projects", nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("no session: %d", w.Code)
	}
	if w := request(h, "GET", "/login?token=guess", nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d", w.Code)
	}
	cookie := login(t, s)
	if w := request(h, "GET", "/login?token=the-token", nil, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("the login URL used twice: %d", w.Code)
	}
	w := request(h, "GET", "/projects", nil, nil, cookie)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `href="/projects/b"`) {
		t.Fatalf("projects: %d\n%s", w.Code, w.Body.String())
	}
	for _, hdr := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"} {
		if w.Header().Get(hdr) != "" {
			t.Errorf("%s is set", hdr)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || w.Header().Get("Referrer-Policy") != "same-origin" {
		t.Errorf("headers %v", w.Header())
	}
	r := httptest.NewRequest("GET", "http://evil.example.com/projects", nil)
	r.AddCookie(cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example.com: %d", rec.Code)
	}

	grant := url.Values{"subject": {"system:serviceaccount:a:default"}, "kind": {"user"}}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if w := request(h, "POST", "/projects/b/grant", strings.NewReader(grant.Encode()), form, cookie); w.Code != http.StatusForbidden {
		t.Errorf("a form without the session's token: %d", w.Code)
	}
	grant.Set("csrf", s.csrfToken())
	if w := request(h, "POST", "/projects/b/grant", strings.NewReader(grant.Encode()), map[string]string{"Content-Type": form["Content-Type"], "Origin": "http://evil.example.com"}, cookie); w.Code != http.StatusForbidden {
		t.Errorf("a form from another origin: %d", w.Code)
	}
	if bindings, _ := client.RbacV1().RoleBindings("b").List(t.Context(), metav1.ListOptions{}); len(bindings.Items) != 0 {
		t.Fatalf("a refused form wrote %d bindings", len(bindings.Items))
	}
	w = request(h, "POST", "/projects/b/grant", strings.NewReader(grant.Encode()), map[string]string{"Content-Type": form["Content-Type"], "Origin": "http://" + host}, cookie)
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Location"), "added") {
		t.Fatalf("grant: %d %s", w.Code, w.Header().Get("Location"))
	}
	bindings, _ := client.RbacV1().RoleBindings("b").List(t.Context(), metav1.ListOptions{})
	if len(bindings.Items) != 1 || bindings.Items[0].RoleRef.Name != "system:image-puller" || bindings.Items[0].Subjects[0].Name != "default" {
		t.Fatalf("bindings after the grant: %+v", bindings.Items)
	}
}

// An uploaded file that is not a credentials file is refused with the byte offset,
// and nothing is created.
func TestUploadIsValidated(t *testing.T) {
	s, client := testServer(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}})
	cookie := login(t, s)
	for _, tc := range []struct {
		file, want string
		created    bool
	}{
		{`{"auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}},, }`, "byte", false},
		{`{"auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}}}`, "secret/pull created", true},
	} {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		_ = mw.WriteField("csrf", s.csrfToken())
		_ = mw.WriteField("name", "pull")
		fw, _ := mw.CreateFormFile("config", "auth.json")
		_, _ = fw.Write([]byte(tc.file))
		_ = mw.Close()
		w := request(s.Handler(), "POST", "/projects/a/secrets", &body, map[string]string{"Content-Type": mw.FormDataContentType()}, cookie)
		loc, _ := url.QueryUnescape(w.Header().Get("Location"))
		if w.Code != http.StatusSeeOther || !strings.Contains(loc, tc.want) {
			t.Errorf("upload %q: %d %s, want %q", tc.file, w.Code, loc, tc.want)
		}
		_, err := client.CoreV1().Secrets("a").Get(t.Context(), "pull", metav1.GetOptions{})
		if (err == nil) != tc.created {
			t.Errorf("upload %q: secret exists %v, want %v", tc.file, err == nil, tc.created)
		}
	}
}

// The graph draws one arrow per cross-project grant, and escapes names.
func TestGraph(t *testing.T) {
	svg := string(drawGraph([]edge{{From: "a", To: "b", Binding: "b/pullers", Subject: "system:serviceaccounts:a"}, {From: "<x>", To: "b"}}))
	if strings.Count(svg, "<line") != 2 || strings.Contains(svg, "<x>") || !strings.Contains(svg, "&lt;x&gt;") {
		t.Errorf("svg:\n%s", svg)
	}
}

// The stream page shows what oc tag and oc import-image made: each tag's source,
// whether it is imported again, its last import and why an import failed.
func TestStreamPageShowsTagSources(t *testing.T) {
	s, _ := testServer(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "p"}})
	is := &imageapi.ImageStream{TypeMeta: metav1.TypeMeta{APIVersion: imageapi.Group + "/v1", Kind: "ImageStream"}, ObjectMeta: metav1.ObjectMeta{Name: "tools", Namespace: "p"}}
	is.Spec.Tags = []imagev1.TagReference{
		{Name: "v1", From: &corev1.ObjectReference{Kind: "DockerImage", Name: "quay.io/org/tool:v1"}, ImportPolicy: imagev1.TagImportPolicy{Scheduled: true}},
		{Name: "v2", From: &corev1.ObjectReference{Kind: "DockerImage", Name: "quay.io/org/tool:v2"}},
	}
	is.Status.Tags = []imageapi.NamedTagEventList{
		{Tag: "v1", Items: []imageapi.TagEvent{{Digest: "sha256:aaaa", Created: metav1.Now(), DockerImageReference: "quay.io/org/tool@sha256:aaaa"}}},
		{Tag: "v2", Items: []imageapi.TagEvent{}, Conditions: []imagev1.TagEventCondition{{Type: imagev1.ImportSuccess, Status: corev1.ConditionFalse, Message: "quay.io refused every credential"}}},
	}
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(is)
	if _, err := s.dynamic.Resource(imageapi.GVR).Namespace("p").Create(context.Background(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := request(s.Handler(), "GET", "/projects/p/imagestreams/tools", nil, nil, login(t, s))
	body := w.Body.String()
	for _, want := range []string{"from DockerImage quay.io/org/tool:v1, imported again periodically; last import", "podman pull quay.io/org/tool@sha256:aaaa",
		"from DockerImage quay.io/org/tool:v2", `role="alert">import failed: quay.io refused every credential`} {
		if !strings.Contains(body, want) {
			t.Errorf("the stream page lacks %q:\n%s", want, body)
		}
	}
}
