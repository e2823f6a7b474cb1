package imageapi

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

func fakeStreams() Streams {
	return Streams{Client: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{GVR: "ImageStreamList"})}
}

// A tag's history is newest first and bounded; pushing the same digest again
// changes nothing.
func TestApplyTag(t *testing.T) {
	var st ImageStreamStatus
	ev := func(d string) TagEvent {
		return TagEvent{Created: metav1.NewTime(time.Unix(1000, 0)), Digest: d, MediaType: "m"}
	}
	if !applyTag(&st, "h/ns/app", "v1", ev("sha256:a")) || applyTag(&st, "h/ns/app", "v1", ev("sha256:a")) {
		t.Error("a repeated digest counted as a change")
	}
	for i := range MaxTagHistory + 5 {
		applyTag(&st, "h/ns/app", "v1", ev(fmt.Sprintf("sha256:%d", i)))
	}
	if len(st.Tags) != 1 || len(st.Tags[0].Items) != MaxTagHistory || st.Tags[0].Items[0].Digest != fmt.Sprintf("sha256:%d", MaxTagHistory+4) {
		t.Errorf("history %+v", st.Tags)
	}
	// Storage is the truth: a tag it lacks goes, one it has comes, history is kept
	// where the tag did not move.
	applyTag(&st, "h/ns/app", "old", ev("sha256:o"))
	if !syncTags(&st, "h/ns/app", map[string]TagEvent{"v1": ev(fmt.Sprintf("sha256:%d", MaxTagHistory+4)), "new": ev("sha256:n")}, time.Unix(2000, 0)) {
		t.Error("sync changed nothing")
	}
	if st.TagNames != "new,v1" || len(st.Tags[0].Items) != MaxTagHistory {
		t.Errorf("after sync: %q %+v", st.TagNames, st.Tags)
	}
}

// A reconcile that read storage before a push finished does not take the push's tag
// out: it was recorded after storage was read.
func TestSyncKeepsTagsRecordedSinceStorageWasRead(t *testing.T) {
	var st ImageStreamStatus
	readAt := time.Unix(5000, 0)
	applyTag(&st, "h/ns/app", "old", TagEvent{Created: metav1.NewTime(readAt.Add(-time.Minute)), Digest: "sha256:o"})
	applyTag(&st, "h/ns/app", "fresh", TagEvent{Created: metav1.NewTime(readAt.Add(time.Second)), Digest: "sha256:f"})
	syncTags(&st, "h/ns/app", map[string]TagEvent{}, readAt)
	if len(st.Tags) != 1 || st.Tags[0].Tag != "fresh" {
		t.Errorf("after a sync with storage read at %v: %+v, want only fresh", readAt, st.Tags)
	}
}

// Imports and failed imports are not storage's: a reconcile of storage keeps them;
// following a newer spec to the same image records its generation.
func TestSyncKeepsImports(t *testing.T) {
	var st ImageStreamStatus
	old := metav1.NewTime(time.Unix(1000, 0))
	applyTag(&st, "h/ns/app", "imported", TagEvent{Created: old, Digest: "sha256:i", DockerImageReference: "quay.io/org/app@sha256:i", Generation: 1})
	st.Tags = append(st.Tags, NamedTagEventList{Tag: "failing", Items: []TagEvent{}, Conditions: []imagev1.TagEventCondition{{Type: imagev1.ImportSuccess, Status: "False"}}})
	syncTags(&st, "h/ns/app", map[string]TagEvent{}, time.Unix(2000, 0))
	if len(st.Tags) != 2 {
		t.Fatalf("a sync with storage took imports out: %+v", st.Tags)
	}
	if !applyTag(&st, "h/ns/app", "imported", TagEvent{Digest: "sha256:i", DockerImageReference: "quay.io/org/app@sha256:i", Generation: 3}) ||
		st.Tags[0].Items[0].Generation != 3 || len(st.Tags[0].Items) != 1 {
		t.Errorf("the same image followed at generation 3: %+v", st.Tags[0])
	}
}

// kubectl get imagestreams shows the tags most recently moved first, and counts the
// rest past 40 characters.
func TestTagNamesColumn(t *testing.T) {
	var st ImageStreamStatus
	for i := range 12 {
		applyTag(&st, "h/ns/app", fmt.Sprintf("v%02d", i), TagEvent{Created: metav1.NewTime(time.Unix(int64(1000+i), 0)), Digest: "sha256:a"})
	}
	if want := "v11,v10,v09,v08,v07,v06,v05,v04,v03,v02 + 2 more..."; st.TagNames != want {
		t.Errorf("TAGS %q, want %q", st.TagNames, want)
	}
	removeTag(&st, "v11")
	removeTag(&st, "v10")
	if want := "v09,v08,v07,v06,v05,v04,v03,v02,v01,v00"; st.TagNames != want {
		t.Errorf("TAGS after deleting the two newest %q, want %q", st.TagNames, want)
	}
}

// Ensure makes a stream once, annotated with its repository; a tag is recorded only
// in the stream a push began with.
func TestEnsureAndRecord(t *testing.T) {
	ctx := context.Background()
	s := fakeStreams()
	name := StreamName("charts/mychart")
	uid, created, err := s.Ensure(ctx, "team", name, "localhost:5000/team/charts/mychart")
	if err != nil || !created {
		t.Fatalf("Ensure: %v %v", created, err)
	}
	again, created, err := s.Ensure(ctx, "team", name, "localhost:5000/team/charts/mychart")
	if err != nil || created || again != uid {
		t.Errorf("second Ensure: %q %v %v", again, created, err)
	}
	obj, err := s.Client.Resource(GVR).Namespace("team").Get(ctx, name, metav1.GetOptions{})
	if err != nil || Repository(obj) != "team/charts/mychart" {
		t.Errorf("repository of the stream: %q %v", Repository(obj), err)
	}
	if err := s.RecordTag(ctx, "team", name, uid, "localhost:5000/team/charts/mychart", "1.0", TagEvent{Digest: "sha256:a"}); err != nil {
		t.Fatal(err)
	}
	err = s.RecordTag(ctx, "team", "gone", "", "localhost:5000/team/gone", "1.0", TagEvent{Digest: "sha256:a"})
	if !errors.Is(err, ErrStreamReplaced) {
		t.Errorf("a tag for a stream that is gone: %v", err)
	}
}

// A referrer is listed once, newest first, and the list stays bounded.
func TestRecordReferrer(t *testing.T) {
	ctx := context.Background()
	s := fakeStreams()
	uid, _, err := s.Ensure(ctx, "team", "app", "localhost:5000/team/app")
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxReferrers + 5 {
		ref := Referrer{Subject: "sha256:subject", Digest: fmt.Sprintf("sha256:%d", i), ArtifactType: "application/vnd.example.sbom"}
		for range 2 {
			if err := s.RecordReferrer(ctx, "team", "app", uid, ref); err != nil {
				t.Fatal(err)
			}
		}
	}
	obj, err := s.Client.Resource(GVR).Namespace("team").Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	is, err := fromUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	refs := is.Status.Referrers
	if len(refs) != MaxReferrers || refs[0].Digest != fmt.Sprintf("sha256:%d", MaxReferrers+4) {
		t.Errorf("%d referrers, first %+v", len(refs), refs[0])
	}
}
