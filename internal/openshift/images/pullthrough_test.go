package images

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/pkg/credentials"
)

type oneStream struct{ is *imageapi.ImageStream }

func (s oneStream) Stream(ns, name string) (*imageapi.ImageStream, bool) {
	return s.is, s.is.Namespace == ns && s.is.Name == name
}

// The pull-through serves only tags imported with reference policy Local, reads
// the source with the first of the project's credentials it accepts, and returns
// what it read verified; refused by all, it names the registry and the fix, never a
// password.
func TestPullThroughReadsLocalImportsWithTheProjectsCredentials(t *testing.T) {
	host := basicRegistry(t)
	img, _ := random.Image(256, 2)
	push(t, host+"/org/app:v1", img)
	d, _ := img.Digest()
	is := &imageapi.ImageStream{ObjectMeta: metav1.ObjectMeta{Namespace: "p", Name: "app"}}
	is.Spec.Tags = []imagev1.TagReference{
		{Name: "v1", ReferencePolicy: imagev1.TagReferencePolicy{Type: imagev1.LocalTagReferencePolicy}},
		{Name: "src", ReferencePolicy: imagev1.TagReferencePolicy{Type: imagev1.SourceTagReferencePolicy}},
	}
	ev := imageapi.TagEvent{Digest: d.String(), DockerImageReference: host + "/org/app@" + d.String()}
	is.Status.Tags = []imageapi.NamedTagEventList{{Tag: "v1", Items: []imageapi.TagEvent{ev}}, {Tag: "src", Items: []imageapi.TagEvent{ev}}}
	creds := []credentials.Candidate{candidate("bad"), candidate("good")}
	p := &PullThrough{Streams: oneStream{is}, Credentials: func(context.Context, string, string) (credentials.Candidates, error) {
		return credentials.Candidates{List: creds}, nil
	}}

	if got, ok := p.Tag("p", "app", "v1"); !ok || got.String() != d.String() {
		t.Errorf("Tag v1: %s %v", got, ok)
	}
	if _, ok := p.Tag("p", "app", "src"); ok {
		t.Error("a tag with reference policy Source is pulled through")
	}
	if got := is.PullSpec(ev, "reg:5000"); got != "reg:5000/p/app@"+d.String() {
		t.Errorf("PullSpec of a Local import: %s", got)
	}

	ctx := context.Background()
	src, ok, err := p.Source(ctx, "p", "app", digest.Digest(d.String()))
	if err != nil || !ok {
		t.Fatalf("Source: %v %v", ok, err)
	}
	_, body, err := src.Manifest(ctx, digest.Digest(d.String()))
	if err != nil || digest.FromBytes(body).String() != d.String() {
		t.Fatalf("manifest: %v", err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	r, err := src.Blob(ctx, digest.Digest(ld.String()))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil || digest.FromBytes(data).String() != ld.String() {
		t.Errorf("blob %s: %v", ld, err)
	}

	if _, ok, err := p.Source(ctx, "p", "app", digest.FromString("other")); ok || err != nil {
		t.Errorf("a digest the stream did not import: %v %v", ok, err)
	}
	creds = creds[:1]
	_, _, err = p.Source(ctx, "p", "app", digest.Digest(d.String()))
	if err == nil || !strings.Contains(err.Error(), host+" refused every credential project p holds") || !strings.Contains(err.Error(), "oc create secret docker-registry <name> -n p --docker-server="+host) || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("refused: %v", err)
	}
}
