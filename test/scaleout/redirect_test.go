package scaleout

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/pkg/credentials"
)

// With --storage-redirect a blob GET is answered with a presigned S3 URL, which
// clients follow; without it (the default, see TestScaleOut) the registry serves the
// bytes itself.
func TestS3Redirect(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	s3, err := harness.StartS3(t.TempDir(), "redirect")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Stop)
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	host := "localhost:" + strconv.Itoa(port)
	p, err := harness.StartRegistryReplica(env.Kubeconfig, t.TempDir(), addr, host, s3,
		append(s3.CredentialParams(), "--storage-redirect")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	ns := env.Namespace(t, ctx, "redirect")
	token, err := env.Account(ctx, ns, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	dockerConfig := harness.DockerConfigFor(t, host, credentials.Credential{Username: "pullgate", Password: token})
	image := host + "/" + ns + "/app:v1"
	content := randomBytes(t, 1<<20)
	if _, err := harness.PushFile(ctx, dockerConfig, image, content); err != nil {
		t.Fatal(err)
	}
	manifest, err := harness.Crane(ctx, dockerConfig, "manifest", image)
	if err != nil {
		t.Fatal(err)
	}
	layer := between(manifest, `"layers":[{`, `}`)
	digest := between(layer, `"digest":"`, `"`)
	registryToken := tokenFrom(t, ctx, addr, token, "repository:"+ns+"/app:pull")

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/"+ns+"/app/blobs/"+digest, nil)
	req.Header.Set("Authorization", "Bearer "+registryToken)
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	location := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(location, s3.Endpoint+"/redirect/") || !strings.Contains(location, "X-Amz-Signature=") {
		t.Fatalf("blob GET with --storage-redirect: %s, Location %q; want 307 to a presigned URL of %s", resp.Status, location, s3.Endpoint)
	}
	// crane follows it and gets the image whole.
	if _, err := harness.Crane(ctx, dockerConfig, "pull", image, filepath.Join(t.TempDir(), "app.tar")); err != nil {
		t.Fatal(err)
	}
}

func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	out, _, _ := strings.Cut(rest, to)
	return out
}
