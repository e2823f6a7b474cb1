package apiserver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

func stream(name string, tags map[string]time.Time) imagev1.ImageStream {
	is := imagev1.ImageStream{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "p"}}
	is.Status.DockerImageRepository = "localhost:5000/p/" + name
	for tag, created := range tags {
		is.Status.Tags = append(is.Status.Tags, imagev1.NamedTagEventList{Tag: tag, Items: []imagev1.TagEvent{{Created: metav1.NewTime(created)}}})
	}
	return is
}

// A row is OpenShift's: name, the public repository when there is one, tags newest
// first, the newest tag's age.
func TestImageStreamTable(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	app := stream("app", map[string]time.Time{"v1": now.Add(-3 * time.Hour), "v2": now.Add(-5 * time.Minute)})
	app.Status.PublicDockerImageRepository = "registry.example.com/p/app"
	table := imageStreamTable([]imagev1.ImageStream{app, stream("empty", nil)}, now)
	if len(table.ColumnDefinitions) != 4 || table.ColumnDefinitions[1].Name != "Image Repository" {
		t.Fatalf("columns %+v", table.ColumnDefinitions)
	}
	want := [][]any{{"app", "registry.example.com/p/app", "v2,v1", "5 minutes ago"}, {"empty", "localhost:5000/p/empty", "", ""}}
	for i, row := range table.Rows {
		if fmt.Sprint(row.Cells) != fmt.Sprint(want[i]) {
			t.Errorf("row %d: %v, want %v", i, row.Cells, want[i])
		}
	}
}

// Tags past the width are counted, not listed.
func TestTagsUpToWidth(t *testing.T) {
	now := time.Now()
	tags := map[string]time.Time{}
	for i := range 12 {
		tags[fmt.Sprintf("release-%02d", i)] = now.Add(-time.Duration(i) * time.Minute)
	}
	got := tagsUpToWidth(stream("app", tags).Status.Tags, 40)
	if !strings.HasPrefix(got, "release-00,release-01,release-02") || !strings.HasSuffix(got, "more...") {
		t.Errorf("%q", got)
	}
}

// A stream's tags as ImageStreamTags: named stream:tag, at the newest image, and
// printed with OpenShift's columns.
func TestImageStreamTags(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	stored := &imageapi.ImageStream{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "p"}}
	stored.Status.Tags = []imageapi.NamedTagEventList{{Tag: "v1", Items: []imageapi.TagEvent{
		{Created: metav1.NewTime(now.Add(-time.Hour)), Digest: "sha256:new", MediaType: "application/vnd.oci.image.manifest.v1+json"},
		{Created: metav1.NewTime(now.Add(-2 * time.Hour)), Digest: "sha256:old"}}}}
	s := &Server{RegistryHost: "localhost:5000"}
	tags := s.imageStreamTags(context.Background(), stored, false)
	if len(tags) != 1 || tags[0].Name != "app:v1" || tags[0].Image.Name != "sha256:new" || tags[0].Image.DockerImageReference != "localhost:5000/p/app@sha256:new" {
		t.Fatalf("%+v", tags)
	}
	row := imageStreamTagTable(tags, now).Rows[0].Cells
	if fmt.Sprint(row) != fmt.Sprint([]any{"app:v1", "localhost:5000/p/app@sha256:new", "About an hour ago", "sha256:new"}) {
		t.Errorf("row %v", row)
	}
}
