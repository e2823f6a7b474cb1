package location

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestPublishThenRead(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if _, err := Read(ctx, client); err == nil || !strings.Contains(err.Error(), "pullgate up") {
		t.Errorf("nothing published: %v, want the command that publishes it", err)
	}
	info := Info{URL: "http://localhost:5000", Hostnames: []string{"localhost:5000", "127.0.0.1:5000"}}
	for range 2 {
		if err := Publish(ctx, client, info); err != nil {
			t.Fatal(err)
		}
	}
	writes := 0
	for _, a := range client.Actions() {
		if _, ok := a.(k8stesting.UpdateAction); ok || a.GetVerb() == "create" {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("publishing the same twice wrote %d times, want 1", writes)
	}
	got, err := Read(ctx, client)
	if err != nil || got.URL != info.URL || !slices.Equal(got.Hostnames, info.Hostnames) {
		t.Errorf("read %+v %v, want %+v", got, err, info)
	}
}
