package imageapi

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

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
	now := time.Unix(1000, 0)
	if !applyTag(&st, "h/ns/app", "v1", "sha256:a", "m", now) || applyTag(&st, "h/ns/app", "v1", "sha256:a", "m", now) {
		t.Error("a repeated digest counted as a change")
	}
	for i := range MaxTagHistory + 5 {
		applyTag(&st, "h/ns/app", "v1", fmt.Sprintf("sha256:%d", i), "m", now)
	}
	if len(st.Tags) != 1 || len(st.Tags[0].Items) != MaxTagHistory || st.Tags[0].Items[0].Digest != fmt.Sprintf("sha256:%d", MaxTagHistory+4) {
		t.Errorf("history %+v", st.Tags)
	}
}

// Ensure makes a stream once, annotated with its repository; a tag is recorded only
// in the stream a push began with.
func TestEnsureAndRecord(t *testing.T) {
	ctx := context.Background()
	s := fakeStreams()
	uid, created, err := s.Ensure(ctx, "team", "charts-mychart-1a2b3c4d", "localhost:5000/team/charts/mychart")
	if err != nil || !created {
		t.Fatalf("Ensure: %v %v", created, err)
	}
	again, created, err := s.Ensure(ctx, "team", "charts-mychart-1a2b3c4d", "localhost:5000/team/charts/mychart")
	if err != nil || created || again != uid {
		t.Errorf("second Ensure: %q %v %v", again, created, err)
	}
	obj, err := s.Client.Resource(GVR).Namespace("team").Get(ctx, "charts-mychart-1a2b3c4d", metav1.GetOptions{})
	if err != nil || Repository(obj) != "team/charts/mychart" {
		t.Errorf("repository of the stream: %q %v", Repository(obj), err)
	}
	if err := s.RecordTag(ctx, "team", "charts-mychart-1a2b3c4d", uid, "localhost:5000/team/charts/mychart", "1.0", "sha256:a", "m"); err != nil {
		t.Fatal(err)
	}
	err = s.RecordTag(ctx, "team", "gone", "", "localhost:5000/team/gone", "1.0", "sha256:a", "m")
	if !errors.Is(err, ErrStreamReplaced) {
		t.Errorf("a tag for a stream that is gone: %v", err)
	}
}
