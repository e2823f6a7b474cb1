package cli

import (
	"strings"
	"testing"

	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestParseStreamRef(t *testing.T) {
	for in, want := range map[string]string{
		"app:v1":            "here/app:v1",
		"src/app:v1":        "src/app:v1",
		"src/app@sha256:ab": "src/app@sha256:ab",
	} {
		got, err := parseStreamRef(in, "here")
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"/app:v1", "a/b/c:v1", ":v1"} {
		if _, err := parseStreamRef(bad, "here"); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// SOURCE names a registry when its first component is a host, as oc guesses.
func TestLooksExternal(t *testing.T) {
	for src, want := range map[string]bool{
		"quay.io/org/app:v1": true, "localhost:5000/p/app:v1": true, "localhost/p/app": true,
		"src/app:v1": false, "app:v1": false,
	} {
		if looksExternal(src) != want {
			t.Errorf("%s: external %v", src, !want)
		}
	}
}

func TestTagValidate(t *testing.T) {
	alias := &TagOptions{Alias: true, Namespace: "p", From: &corev1.ObjectReference{Kind: "ImageStreamTag", Namespace: "p", Name: "app:v1"}}
	alias.Dests = []streamRef{{Namespace: "p", Stream: "app", Tag: "latest"}}
	if err := alias.Validate(); err != nil {
		t.Errorf("alias within a stream: %v", err)
	}
	alias.Dests = []streamRef{{Namespace: "p", Stream: "other", Tag: "latest"}}
	if err := alias.Validate(); err == nil || !strings.Contains(err.Error(), "across different Image Streams") {
		t.Errorf("alias across streams: %v", err)
	}
	noTag := &TagOptions{Dests: []streamRef{{Namespace: "p", Stream: "app"}}}
	if err := noTag.Validate(); err == nil || !strings.Contains(err.Error(), "stream:tag") {
		t.Errorf("a destination without a tag: %v", err)
	}
}

func TestPolicies(t *testing.T) {
	if p, err := referencePolicy("local"); err != nil || p.Type != imagev1.LocalTagReferencePolicy {
		t.Errorf("local: %v %v", p, err)
	}
	if _, err := referencePolicy("remote"); err == nil || !strings.Contains(err.Error(), "--reference-policy") {
		t.Errorf("bad policy: %v", err)
	}
	if m, err := importMode(""); err != nil || m != imagev1.ImportModeLegacy {
		t.Errorf("default import mode: %v %v", m, err)
	}
	if _, err := importMode("All"); err == nil {
		t.Error("a bad import mode passed")
	}
}

func TestImportImageValidate(t *testing.T) {
	o := &ImportImageOptions{Stream: "imp", Tag: "v1", From: "quay.io/a/b:v1"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "pass --confirm") {
		t.Errorf("a new stream without --confirm: %v", err)
	}
	o.existing = &imagev1.ImageStream{Spec: imagev1.ImageStreamSpec{Tags: []imagev1.TagReference{{Name: "v1", From: &corev1.ObjectReference{Kind: "DockerImage", Name: "quay.io/a/b:v1"}}}}}
	o.From = ""
	if err := o.Validate(); err != nil || o.From != "quay.io/a/b:v1" {
		t.Errorf("re-import of a spec tag: %v, from %q", err, o.From)
	}
}
