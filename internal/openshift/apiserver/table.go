package apiserver

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	units "github.com/docker/go-units"
	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// wantsTable says whether the client (kubectl, oc get) asked for server-side
// printing: a meta.k8s.io Table.
func wantsTable(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "as=Table")
}

// imageStreamColumns are OpenShift's: `oc get is` prints NAME, IMAGE REPOSITORY,
// TAGS, UPDATED.
var imageStreamColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
	{Name: "Image Repository", Type: "string", Description: "The effective location this stream may be accessed at."},
	{Name: "Tags", Type: "string", Description: "Human readable list of tags."},
	{Name: "Updated", Type: "string", Description: "Last update time."},
}

// imageStreamTable is streams as openshift-apiserver prints them, at now.
func imageStreamTable(streams []imagev1.ImageStream, now time.Time) metav1.Table {
	t := metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}, ColumnDefinitions: imageStreamColumns, Rows: []metav1.TableRow{}}
	for i := range streams {
		is := &streams[i]
		var latest time.Time
		for _, tag := range is.Status.Tags {
			if len(tag.Items) > 0 && tag.Items[0].Created.After(latest) {
				latest = tag.Items[0].Created.Time
			}
		}
		updated := ""
		if !latest.IsZero() {
			updated = units.HumanDuration(now.Sub(latest)) + " ago"
		}
		repo := is.Status.DockerImageRepository
		if is.Status.PublicDockerImageRepository != "" {
			repo = is.Status.PublicDockerImageRepository
		}
		meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}, ObjectMeta: is.ObjectMeta}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{is.Name, repo, tagsUpToWidth(is.Status.Tags, 40), updated},
			Object: runtime.RawExtension{Object: meta},
		})
	}
	return t
}

// tagsUpToWidth lists tags newest first in about width characters, and how many
// more there are, as openshift-apiserver's printer does.
func tagsUpToWidth(tags []imagev1.NamedTagEventList, width int) string {
	type named struct {
		name    string
		created time.Time
	}
	sorted := make([]named, len(tags))
	for i, t := range tags {
		sorted[i].name = t.Tag
		if len(t.Items) > 0 {
			sorted[i].created = t.Items[0].Created.Round(time.Second)
		}
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].created.Equal(sorted[j].created) {
			return sorted[i].created.After(sorted[j].created)
		}
		return sorted[i].name < sorted[j].name
	})
	names := make([]string, len(sorted))
	for i, n := range sorted {
		names[i] = n.name
	}
	remaining := width
	for i, name := range names {
		remaining -= len(name) + 1
		if remaining >= 0 {
			continue
		}
		if i == 0 {
			names = names[:1]
			break
		}
		// Past the width: keep going while that makes the edge less ragged.
		margin := width / 4
		if margin < remaining+len(name) && margin >= -remaining {
			continue
		}
		names = names[:i]
		break
	}
	if hidden := len(tags) - len(names); hidden > 0 {
		return fmt.Sprintf("%s + %d more...", strings.Join(names, ","), hidden)
	}
	return strings.Join(names, ",")
}
