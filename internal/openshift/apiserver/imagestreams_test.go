package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// pullers lets the named users pull (get imagestreams/layers) anywhere.
type pullers map[string]bool

func (p pullers) Decide(u rbacauthz.User, r rbacauthz.Request) rbacauthz.Decision {
	return rbacauthz.Decision{Allowed: p[u.Name] && r.Verb == "get" && r.Subresource == imageapi.LayersSubresource}
}

func (pullers) WhoCan(rbacauthz.Request) []rbacauthz.Grant { return nil }

// imageServer is a Server over an in-memory registry holding src/app:v1, and the
// stored stream src/app recording it.
func imageServer(t *testing.T, users pullers) (*Server, string, string) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host+"/src/app:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	src := &imageapi.ImageStream{TypeMeta: metav1.TypeMeta{APIVersion: imageapi.Group + "/v1", Kind: "ImageStream"}, ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "src", UID: "src-uid"}}
	src.Status.Tags = []imageapi.NamedTagEventList{{Tag: "v1", Items: []imageapi.TagEvent{{Digest: d.String(), Created: metav1.Now()}}}}
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(src)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{imageapi.GVR: "ImageStreamList"}, &unstructured.Unstructured{Object: m})
	s := &Server{Client: fake.NewClientset(), Dynamic: dyn, Authz: users, RegistryHost: host, ProxyClientName: "front-proxy-client",
		Images: images.NewRegistry(host, authn.Anonymous, nil), Log: slog.New(slog.DiscardHandler)}
	return s, host, d.String()
}

func tagRequest(from string) string {
	b, _ := json.Marshal(imagev1.ImageStreamTag{ObjectMeta: metav1.ObjectMeta{Name: "app:prod"},
		Tag: &imagev1.TagReference{From: &corev1.ObjectReference{Kind: "ImageStreamImage", Namespace: "src", Name: from}}})
	return string(b)
}

// oc tag src/app@sha dst/app:prod: the image is in the registry at dst/app:prod and
// the stream dst/app has the spec tag and the tag's image.
func TestTagCopiesIntoTheStream(t *testing.T) {
	s, host, digest := imageServer(t, pullers{"alice": true})
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("POST", "/apis/image.openshift.io/v1/namespaces/dst/imagestreamtags", tagRequest("app@"+digest), "alice", true))
	if w.Code != http.StatusCreated {
		t.Fatalf("oc tag: %d %s", w.Code, w.Body)
	}
	var ist imagev1.ImageStreamTag
	if err := json.Unmarshal(w.Body.Bytes(), &ist); err != nil || ist.Image.Name != digest || ist.Image.DockerImageReference != host+"/dst/app@"+digest || ist.Tag == nil || ist.Tag.Generation == nil {
		t.Fatalf("the tag answered: %v %s", err, w.Body)
	}
	got, err := remote.Head(mustTag(t, host+"/dst/app:prod"))
	if err != nil || got.Digest.String() != digest {
		t.Fatalf("dst/app:prod in the registry: %v %v", got, err)
	}
	stored, err := s.streams().Read(context.Background(), "dst", "app")
	if err != nil {
		t.Fatal(err)
	}
	if spec, ok := stored.Spec.SpecTag("prod"); !ok || spec.From.Name != "app@"+digest || len(stored.Status.Tags) != 1 || stored.Status.Tags[0].Items[0].Digest != digest {
		t.Errorf("stored stream: spec %+v status %+v", stored.Spec, stored.Status)
	}
}

// Without the right to pull the source, nothing is tagged and no stream is made.
func TestTagRefusedWithoutPull(t *testing.T) {
	s, host, digest := imageServer(t, pullers{})
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("POST", "/apis/image.openshift.io/v1/namespaces/dst/imagestreamtags", tagRequest("app@"+digest), "mallory", true))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), `cannot pull from image stream src/app`) {
		t.Fatalf("oc tag without pull: %d %s", w.Code, w.Body)
	}
	if _, err := s.streams().Read(context.Background(), "dst", "app"); !apierrors.IsNotFound(err) {
		t.Errorf("a refused tag made a stream: %v", err)
	}
	if _, err := remote.Head(mustTag(t, host+"/dst/app:prod")); err == nil {
		t.Error("a refused tag is in the registry")
	}
}

// A tag that cannot be followed leaves nothing: the stream made for it is deleted.
func TestFailedTagLeavesNothing(t *testing.T) {
	s, _, _ := imageServer(t, pullers{"alice": true})
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, request("POST", "/apis/image.openshift.io/v1/namespaces/dst/imagestreamtags", tagRequest("app@sha256:"+strings.Repeat("0", 64)), "alice", true))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "the stream has no such image") {
		t.Fatalf("tagging an image the stream does not have: %d %s", w.Code, w.Body)
	}
	if _, err := s.streams().Read(context.Background(), "dst", "app"); !apierrors.IsNotFound(err) {
		t.Errorf("a failed tag left a stream: %v", err)
	}
}

// A strategic merge patch (oc apply, oc set image-lookup) changes the stored spec.
func TestPatchImageStream(t *testing.T) {
	s, _, _ := imageServer(t, pullers{})
	r := request("PATCH", "/apis/image.openshift.io/v1/namespaces/src/imagestreams/app", `{"spec":{"lookupPolicy":{"local":true}}}`, "alice", true)
	r.Header.Set("Content-Type", "application/strategic-merge-patch+json")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("patch: %d %s", w.Code, w.Body)
	}
	stored, err := s.streams().Read(context.Background(), "src", "app")
	if err != nil || !stored.Spec.LookupPolicy.Local || len(stored.Status.Tags) != 1 {
		t.Errorf("patched stream: %+v %v", stored, err)
	}
	r = request("PATCH", "/apis/image.openshift.io/v1/namespaces/src/imagestreams/app", `{}`, "alice", true)
	r.Header.Set("Content-Type", "application/apply-patch+yaml")
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("server-side apply: %d %s", w.Code, w.Body)
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func TestValidateFrom(t *testing.T) {
	for _, tc := range []struct {
		kind, name string
		ok         bool
	}{
		{"DockerImage", "quay.io/org/app:v1", true},
		{"DockerImage", "quay.io/org/APP:v1", false},
		{"ImageStreamTag", "app:v1", true},
		{"ImageStreamTag", "app", false},
		{"ImageStreamImage", "app@sha256:abc", true},
		{"ImageStreamImage", "app:v1", false},
		{"Pod", "x", false},
	} {
		msg := validateFrom(corev1.ObjectReference{Kind: tc.kind, Name: tc.name})
		if (msg == "") != tc.ok {
			t.Errorf("%s %s: %q", tc.kind, tc.name, msg)
		}
	}
}

// changedTags are the tags to follow after an update: new ones, and those whose
// source, generation or import policy changed.
func TestChangedTags(t *testing.T) {
	one, two := int64(1), int64(2)
	from := &corev1.ObjectReference{Kind: "DockerImage", Name: "a:1"}
	old := []imagev1.TagReference{{Name: "same", From: from, Generation: &one}, {Name: "gen", From: from, Generation: &one}, {Name: "gone", From: from}}
	now := []imagev1.TagReference{{Name: "same", From: from, Generation: &one}, {Name: "gen", From: from, Generation: &two}, {Name: "new", From: from}}
	if got := changedTags(old, now); strings.Join(got, ",") != "gen,new" {
		t.Errorf("changed %v", got)
	}
}

// An alias moves after its source tag in the same project; one that follows
// another project's tag is left to the write path, where the writer was checked.
func TestAliasMoved(t *testing.T) {
	stream := func(ns, name string, tagDigests ...string) *imageapi.ImageStream {
		is := &imageapi.ImageStream{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		for i := 0; i < len(tagDigests); i += 2 {
			is.Status.Tags = append(is.Status.Tags, imageapi.NamedTagEventList{Tag: tagDigests[i], Items: []imageapi.TagEvent{{Digest: tagDigests[i+1]}}})
		}
		return is
	}
	app := stream("p", "app", "v1", "sha256:new", "latest", "sha256:old")
	other := stream("q", "app", "v1", "sha256:new")
	streams := map[string]*imageapi.ImageStream{"p/app": app, "q/app": other}
	alias := imagev1.TagReference{Name: "latest", From: &corev1.ObjectReference{Kind: "ImageStreamTag", Name: "app:v1"}}
	if !aliasMoved(app, alias, streams) {
		t.Error("an alias whose source moved is not followed")
	}
	app.Status.Tags[1].Items[0].Digest = "sha256:new"
	if aliasMoved(app, alias, streams) {
		t.Error("an alias at its source's image is followed again")
	}
	app.Status.Tags[1].Items[0].Digest = "sha256:old"
	alias.From.Namespace = "q"
	if aliasMoved(app, alias, streams) {
		t.Error("a tag following another project's tag is followed without its writer's check")
	}
}
