package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
)

// The ImageStream shows exactly what the registry serves: a tag appears once storage
// holds it, whatever the client does after, and goes when the tag or its manifest is
// deleted, by any client.
func TestImageStreamShowsExactlyWhatTheRegistryServes(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	ns := createNamespace(t, ctx, "exact")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "edit")
	image := env.RegistryHost + "/" + ns + "/app"
	pushImage(t, ctx, cfg, image+":base")
	token, err := env.ServiceAccountToken(ctx, ns, "pusher")
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.RegistryClient(ctx, ns+"/app", token)
	if err != nil {
		t.Fatal(err)
	}
	base, mediaType, err := c.Manifest(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}

	// 100 manifest PUTs, each abandoned by its client 0–30 ms after it began.
	cancelled := 0
	for i := range 100 {
		pctx, cancel := context.WithTimeout(ctx, time.Duration(rand.IntN(31))*time.Millisecond)
		err := c.PutManifest(pctx, fmt.Sprintf("t%03d", i), mediaType, annotated(t, base, i))
		if err != nil && pctx.Err() == nil {
			t.Fatalf("manifest PUT %d: %v", i, err)
		}
		if err != nil {
			cancelled++
		}
		cancel()
	}
	t.Logf("%d of 100 manifest PUTs were cancelled by their client", cancelled)
	// The registry finishes what it was sent after the client has gone.
	var diff string
	if !harness.Eventually(ctx, 15*time.Second, func(ctx context.Context) bool {
		diff = env.StreamDiff(ctx, c, ns, "app")
		return diff == ""
	}) {
		t.Fatalf("after 100 cancelled manifest PUTs, the ImageStream and the registry differ:\n%s", diff)
	}

	// Deletes, by tag and by digest, with crane and skopeo: the stream follows at once.
	shared := annotated(t, base, 1000)
	for _, tag := range []string{"keep-a", "keep-b"} {
		if err := c.PutManifest(ctx, tag, mediaType, shared); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PutManifest(ctx, "keep-c", mediaType, annotated(t, base, 1001)); err != nil {
		t.Fatal(err)
	}
	if err := c.PutManifest(ctx, "keep-d", mediaType, annotated(t, base, 1002)); err != nil {
		t.Fatal(err)
	}
	requireSame(t, ctx, c, ns, "after the keep-* pushes")
	out, err := env.Kubectl(ctx, "-n", ns, "get", "imagestreams", "app")
	if err != nil || !strings.Contains(out, "keep-a") || !strings.Contains(out, "keep-d") || !strings.Contains(out, "more...") {
		t.Errorf("kubectl get imagestreams shows the newest tags first and counts the rest:\n%s (%v)", out, err)
	}

	if _, err := harness.Crane(ctx, cfg, "delete", image+":keep-c"); err != nil {
		t.Fatal(err)
	}
	requireSame(t, ctx, c, ns, "after crane deleted tag keep-c")

	sharedDigest := craneDigest(t, ctx, cfg, image+":keep-a")
	requireCommand(t, "skopeo")
	if out, err := run(ctx, "skopeo", "delete", "--tls-verify=false", "--creds", "pullgate:"+token, "docker://"+image+"@"+sharedDigest); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	requireSame(t, ctx, c, ns, "after skopeo deleted the manifest of keep-a and keep-b")
	tags, _, _ := env.StreamTags(ctx, ns, "app")
	if _, ok := tags["keep-b"]; ok {
		t.Error("keep-b is still in the ImageStream after its manifest was deleted")
	}

	if _, err := harness.Crane(ctx, cfg, "delete", image+"@"+craneDigest(t, ctx, cfg, image+":keep-d")); err != nil {
		t.Fatal(err)
	}
	requireSame(t, ctx, c, ns, "after crane deleted the manifest of keep-d by digest")
}

// Each tag says what it is: an image, a Helm chart, an artifact of some type.
func TestImageStreamRecordsArtifactTypes(t *testing.T) {
	ctx := harness.Context(t, 2*time.Minute)
	ns := createNamespace(t, ctx, "artifacts")
	cfg := dockerConfigFor(t, ctx, ns, "pusher", "edit")
	pushImage(t, ctx, cfg, env.RegistryHost+"/"+ns+"/things:image")
	token, err := env.ServiceAccountToken(ctx, ns, "pusher")
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.RegistryClient(ctx, ns+"/things", token)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := c.PutBlob(ctx, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	chartConfig, err := c.PutBlob(ctx, []byte(`{"name":"mychart","version":"0.1.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	const oci = "application/vnd.oci.image.manifest.v1+json"
	manifest := func(artifactType, configType, config string, size int) []byte {
		m := map[string]any{"schemaVersion": 2, "mediaType": oci,
			"config": map[string]any{"mediaType": configType, "digest": config, "size": size},
			"layers": []any{map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.String(), "size": 2}}}
		if artifactType != "" {
			m["artifactType"] = artifactType
		}
		data, _ := json.Marshal(m)
		return data
	}
	if err := c.PutManifest(ctx, "sbom", oci, manifest("application/spdx+json", "application/vnd.oci.empty.v1+json", empty.String(), 2)); err != nil {
		t.Fatal(err)
	}
	if err := c.PutManifest(ctx, "chart", oci, manifest("", "application/vnd.cncf.helm.config.v1+json", chartConfig.String(), 36)); err != nil {
		t.Fatal(err)
	}
	_, is, err := env.StreamTags(ctx, ns, "things")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"image": "application/vnd.docker.container.image.v1+json",
		"sbom":  "application/spdx+json",
		"chart": "application/vnd.cncf.helm.config.v1+json",
	}
	for _, tag := range is.Status.Tags {
		if got := tag.Items[0].ArtifactType; got != want[tag.Tag] {
			t.Errorf("tag %s: artifactType %q, want %q", tag.Tag, got, want[tag.Tag])
		}
		delete(want, tag.Tag)
	}
	if len(want) != 0 {
		t.Errorf("tags missing from the stream: %v", want)
	}
}

// annotated is manifest with one more annotation, a different manifest for each n.
func annotated(t *testing.T, manifest []byte, n int) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	m["annotations"] = map[string]string{"test.pullgate.dev/n": fmt.Sprint(n)}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func requireSame(t *testing.T, ctx context.Context, c *harness.RegistryClient, ns, when string) {
	t.Helper()
	if diff := env.StreamDiff(ctx, c, ns, "app"); diff != "" {
		t.Fatalf("%s, the ImageStream and the registry differ:\n%s", when, diff)
	}
}
