package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// Space comes back, while the registry serves: images pushed and then deleted, and an
// abandoned upload, are reclaimed by pullgate adm prune while 8 clients push and pull
// (some reusing the very blobs being reclaimed, pushing again what the registry then
// refuses for a reclaimed layer), with no failed request and every acknowledged push
// intact; disk usage returns to its baseline.
func TestPruneReclaimsWhileClientsPushAndPull(t *testing.T) {
	ctx := harness.Context(t, 6*time.Minute)
	storage := filepath.Join(env.DataDir, "registry", "storage")
	baseline := diskUsage(t, storage)
	ns := createNamespace(t, ctx, "prune")
	token, err := env.Account(ctx, ns, "pusher", "edit")
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "pullgate", Password: token}))

	// Garbage: 16 images of 2 MiB pushed and deleted, and an upload never finished.
	junk, err := name.NewRepository(env.RegistryHost + "/" + ns + "/junk")
	if err != nil {
		t.Fatal(err)
	}
	var junkLayers []v1.Layer
	for i := range 16 {
		layer, err := random.Layer(2<<20, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		junkLayers = append(junkLayers, layer)
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err != nil {
			t.Fatal(err)
		}
		ref := junk.Tag(fmt.Sprint("v", i))
		// The role granted a moment ago reaches the token service through its informers.
		harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
			err = remote.Write(ref, img, auth, remote.WithContext(ctx))
			return err == nil
		})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		if err := remote.Delete(junk.Digest(d.String()), auth, remote.WithContext(ctx)); err != nil {
			t.Fatal(err)
		}
	}
	// A namespace deleted with its images: its repository goes at once, its blobs
	// with the next prune.
	goneNS := createNamespace(t, ctx, "prune-gone")
	goneToken, err := env.Account(ctx, goneNS, "pusher", "edit")
	if err != nil {
		t.Fatal(err)
	}
	goneLayer, err := random.Layer(4<<20, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	goneImage, _ := mutate.AppendLayers(empty.Image, goneLayer)
	goneRef, err := name.ParseReference(env.RegistryHost + "/" + goneNS + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		err = remote.Write(goneRef, goneImage,
			remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "pullgate", Password: goneToken})), remote.WithContext(ctx))
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Admin.CoreV1().Namespaces().Delete(ctx, goneNS, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	goneRepo := filepath.Join(storage, "docker/registry/v2/repositories", goneNS, "app", "_manifests")
	if !harness.Eventually(ctx, time.Minute, func(context.Context) bool {
		_, err := os.Stat(goneRepo)
		return os.IsNotExist(err)
	}) {
		t.Fatalf("the repository of deleted namespace %s is still stored at %s", goneNS, goneRepo)
	}

	c, err := env.RegistryClient(ctx, ns+"/junk", token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AbandonUpload(ctx, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	withGarbage := diskUsage(t, storage)
	if withGarbage-baseline < 32<<20 {
		t.Fatalf("storage grew by %d bytes with 33 MiB of garbage", withGarbage-baseline)
	}

	// Without --confirm, a prune only says what it would reclaim.
	res, err := harness.Run(ctx, harness.RunOptions{}, "adm", "prune", "--keep-younger-than", "0s", "--uploads-older-than", "1ns",
		"--data-dir", env.DataDir, "--kubeconfig", env.Kubeconfig)
	if err != nil || res.ExitCode != 0 || !strings.HasPrefix(res.Stdout, "would reclaim ") || !strings.Contains(res.Stdout, "1 abandoned uploads") {
		t.Fatalf("pullgate adm prune (dry run): %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	// Other tests' namespaces may still be going away, so storage as a whole may
	// shrink meanwhile: what the dry run must not touch is the garbage it reported.
	uploads := filepath.Join(storage, "docker/registry/v2/repositories", ns, "junk/_uploads")
	for _, l := range append(junkLayers, goneLayer) {
		if !blobStored(t, storage, l) {
			t.Fatalf("a dry run deleted layer %s", digestOf(l))
		}
	}
	if entries, err := os.ReadDir(uploads); err != nil || len(entries) == 0 {
		t.Fatalf("a dry run deleted the abandoned upload in %s (%v)", uploads, err)
	}

	// 8 clients push and pull; the prune starts once each has pushed. From then on the
	// odd ones put manifests that name the garbage's layers, as a client does that
	// found a layer present a moment ago and skipped its upload: while the prune is
	// taking exactly those layers away.
	stop, pruning := make(chan struct{}), make(chan struct{})
	started := make(chan struct{}, 8)
	var mu sync.Mutex
	acknowledged := map[string]string{} // image → digest
	var failures []string
	var wg sync.WaitGroup
	for client := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo := junk
			if client%2 == 0 {
				repo, _ = name.NewRepository(fmt.Sprintf("%s/%s/busy-%d", env.RegistryHost, ns, client))
			}
			for i := 0; ; i++ {
				reuse := false
				select {
				case <-stop:
					return
				case <-pruning:
					reuse = client%2 == 1
				default:
				}
				ref := repo.Tag(fmt.Sprintf("c%d-%d", client, i))
				digest, err := pushAndPull(ctx, ref, junkLayers[(client+i)%len(junkLayers)], reuse, auth)
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("client %d, %s: %v", client, ref, err))
				} else {
					acknowledged[ref.String()] = digest
				}
				mu.Unlock()
				if i == 0 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range 8 {
		<-started
	}
	close(pruning)
	res, err = harness.Run(ctx, harness.RunOptions{}, "adm", "prune", "--confirm", "--keep-younger-than", "0s",
		"--data-dir", env.DataDir, "--kubeconfig", env.Kubeconfig)
	close(stop)
	wg.Wait()
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("pullgate adm prune --confirm: %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Logf("pullgate adm prune: %s", strings.TrimSpace(res.Stdout))
	if len(failures) > 0 {
		t.Fatalf("%d requests failed while the prune ran:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	t.Logf("%d pushes acknowledged while the prune ran", len(acknowledged))
	for image, digest := range acknowledged {
		ref, _ := name.ParseReference(image)
		if err := pullValid(ctx, ref, digest, auth); err != nil {
			t.Errorf("acknowledged push %s: %v", image, err)
		}
	}
	if !strings.HasPrefix(res.Stdout, "reclaimed ") {
		t.Errorf("the report does not say what was reclaimed: %s", res.Stdout)
	}

	// Delete what the clients pushed too; the uploads the prune must now take are
	// older than a nanosecond. Usage is back at the baseline.
	for image, digest := range acknowledged {
		ref, _ := name.ParseReference(image)
		_ = remote.Delete(ref.Context().Digest(digest), auth, remote.WithContext(ctx))
	}
	if !harness.Eventually(ctx, time.Minute, func(ctx context.Context) bool {
		_, err := env.Admin.CoreV1().Namespaces().Get(ctx, goneNS, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}) {
		t.Fatalf("namespace %s was not deleted", goneNS)
	}
	res, err = harness.Run(ctx, harness.RunOptions{}, "adm", "prune", "--confirm", "--keep-younger-than", "0s", "--uploads-older-than", "1ns",
		"--data-dir", env.DataDir, "--kubeconfig", env.Kubeconfig)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("second prune: %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Logf("second prune: %s", strings.TrimSpace(res.Stdout))
	after := diskUsage(t, storage)
	t.Logf("registry storage: %d bytes before, %d after pushing, deleting and pruning", baseline, after)
	if after > baseline+baseline/20+64<<10 {
		t.Errorf("registry storage holds %d bytes after the prune, baseline %d: more than 5%% was not reclaimed", after, baseline)
	}
	for _, l := range append(junkLayers, goneLayer) {
		if blobStored(t, storage, l) {
			t.Errorf("layer %s of a deleted image or namespace is still stored", digestOf(l))
		}
	}
}

// blobStored reports whether the registry's filesystem storage holds l's data.
func blobStored(t *testing.T, storage string, l v1.Layer) bool {
	t.Helper()
	d := digestOf(l)
	_, err := os.Stat(filepath.Join(storage, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

func digestOf(l v1.Layer) v1.Hash {
	d, _ := l.Digest()
	return d
}

// pushAndPull pushes an image of a small layer of its own to ref, or, with reuse,
// an image of layer that puts only its config and manifest (layer is in ref's
// repository already) — and, if the registry refuses it because a prune has reclaimed
// the layer meanwhile, pushes it whole; then it pulls the image back and checks every
// byte.
func pushAndPull(ctx context.Context, ref name.Tag, layer v1.Layer, reuse bool, auth remote.Option) (string, error) {
	if !reuse {
		own, err := random.Layer(16<<10, types.OCILayer)
		if err != nil {
			return "", err
		}
		layer = own
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", err
	}
	if img, err = mutate.Config(img, v1.Config{Env: []string{"PUSH=" + ref.String()}}); err != nil {
		return "", err
	}
	if !reuse {
		err = remote.Write(ref, img, auth, remote.WithContext(ctx))
	} else {
		var config []byte
		if config, err = img.RawConfigFile(); err == nil {
			err = remote.WriteLayer(ref.Context(), static.NewLayer(config, types.DockerConfigJSON), auth, remote.WithContext(ctx))
		}
		if err == nil {
			err = remote.Put(ref, img, auth, remote.WithContext(ctx))
		}
		// The layer was reclaimed since the client found it: the registry refuses the
		// manifest, and the client uploads the layer again, as any client does.
		var terr *transport.Error
		if errors.As(err, &terr) && len(terr.Errors) > 0 && terr.Errors[0].Code == transport.ManifestBlobUnknownErrorCode {
			err = remote.Write(ref, img, auth, remote.WithContext(ctx))
		}
	}
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	d, _ := img.Digest()
	if err := pullValid(ctx, ref, d.String(), auth); err != nil {
		return "", fmt.Errorf("pull: %w", err)
	}
	return d.String(), nil
}

// pullValid pulls ref, checks it is digest, and reads and checks every blob.
func pullValid(ctx context.Context, ref name.Reference, digest string, auth remote.Option) error {
	img, err := remote.Image(ref, auth, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if d, _ := img.Digest(); d.String() != digest {
		return fmt.Errorf("digest %s, pushed %s", d, digest)
	}
	return validate.Image(img)
}

// diskUsage is the bytes in the files under dir.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
