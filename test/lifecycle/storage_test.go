package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/harness"
)

// newProject makes a namespace with an account that may push to it, and returns the
// namespace and the account's token.
func newProject(t *testing.T, ctx context.Context, e *harness.Env, prefix string) (string, string) {
	t.Helper()
	ns, err := e.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token, err := e.Account(ctx, ns.Name, "pusher", "edit")
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name, token
}

// startWithProject starts its own pullgate up (stopped when the test ends) and makes
// a project there, as newProject does; the context bounds the test.
func startWithProject(t *testing.T, opts harness.Options, prefix string) (*harness.Env, context.Context, string, string) {
	t.Helper()
	e, err := harness.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx := harness.Context(t, 6*time.Minute)
	ns, token := newProject(t, ctx, e, prefix)
	return e, ctx, ns, token
}

// push pushes content as a one-layer image with crane, waiting for a role granted a
// moment ago to reach the token service, and returns its digest.
func push(t *testing.T, ctx context.Context, e *harness.Env, token, image string, content []byte) string {
	t.Helper()
	cfg, err := e.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}
	var d string
	harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
		d, err = harness.PushFile(ctx, cfg, image, content)
		return err == nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A SIGKILL while manifests are being pushed loses no acknowledged push, and after
// the restart every ImageStream shows exactly what storage holds — including what a
// crash between storage and the stream left: a tag only in storage, a tag only in
// the stream, a tag half-written in storage.
func TestSIGKILLDuringPushesLeavesStreamsMatchingStorage(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	ns, token := newProject(t, ctx, env, "killed")
	push(t, ctx, env, token, env.RegistryHost+"/"+ns+"/app:base", []byte("base"))
	c, err := env.RegistryClient(ctx, ns+"/app", token)
	if err != nil {
		t.Fatal(err)
	}
	base, mediaType, err := c.Manifest(ctx, "base")
	if err != nil {
		t.Fatal(err)
	}

	// 8 writers put manifests until the process dies.
	var mu sync.Mutex
	acknowledged := map[string]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				tag := fmt.Sprintf("w%d-%d", w, i)
				m := annotated(t, base, tag)
				if c.PutManifest(ctx, tag, mediaType, m) != nil {
					return
				}
				mu.Lock()
				acknowledged[tag] = digest.FromBytes(m).String()
				mu.Unlock()
			}
		}()
	}
	harness.Eventually(ctx, time.Minute, func(context.Context) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acknowledged) >= 200
	})
	if err := env.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	// What a crash between the two writes leaves, made certain: a tag storage holds
	// that the stream never recorded, and one the stream names that storage lacks.
	repoDir := filepath.Join(env.DataDir, "registry", "storage", "docker/registry/v2/repositories", ns, "app", "_manifests")
	orphan := digest.FromBytes(annotated(t, base, "w0-0"))
	if acknowledged["w0-0"] == "" {
		t.Fatal("writer 0 had no push acknowledged")
	}
	for _, link := range []string{"tags/storage-only/current/link", "tags/storage-only/index/sha256/" + orphan.Encoded() + "/link"} {
		p := filepath.Join(repoDir, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(orphan), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// And a push the kill cut between its tag's index link and its current link (its
	// client was never answered), a minute ago.
	halfWritten := filepath.Join(repoDir, "tags/half-written")
	indexLink := filepath.Join(halfWritten, "index/sha256", orphan.Encoded(), "link")
	if err := os.MkdirAll(filepath.Dir(indexLink), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(indexLink, []byte(orphan), 0o644); err != nil {
		t.Fatal(err)
	}
	aMinuteAgo := time.Now().Add(-time.Minute)
	for p := indexLink; p != repoDir; p = filepath.Dir(p) {
		if err := os.Chtimes(p, aMinuteAgo, aMinuteAgo); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Restart("--reconcile-interval", "2s", "--prune-interval", "1s", "--prune-keep-younger-than", "0s"); err != nil {
		t.Fatal(err)
	}
	addStreamOnlyTag(t, ctx, ns)

	c, err = env.RegistryClient(ctx, ns+"/app", token)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pushes acknowledged before the SIGKILL", len(acknowledged))
	// Every listed tag is served once the reconciler has removed what half-written
	// pushes left (at start, and for a push cut a moment ago, 10 s later).
	var served map[string]string
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		served, err = c.Tags(ctx)
		return err == nil
	}) {
		t.Fatalf("after the restart: %v", err)
	}
	if _, ok := served["half-written"]; ok {
		t.Error("the half-written tag is still listed")
	}
	for tag, d := range acknowledged {
		if served[tag] != d {
			t.Errorf("acknowledged push %s (%s) is served as %q after the restart", tag, d, served[tag])
		}
	}
	// The reconciler runs at start and every --reconcile-interval (here 2 s).
	var diff string
	if !harness.Eventually(ctx, 30*time.Second, func(ctx context.Context) bool {
		diff = env.StreamDiff(ctx, c, ns, "app")
		return diff == ""
	}) {
		t.Fatalf("after the restart, the ImageStream and the registry still differ:\n%s", diff)
	}

	// The prune that up runs every --prune-interval reclaims a deleted manifest, and
	// nothing acknowledged.
	deleted := acknowledged["w0-0"]
	delete(acknowledged, "w0-0")
	if err := c.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(env.DataDir, "registry", "storage", "docker/registry/v2/blobs/sha256", deleted[7:9], deleted[7:], "data")
	if !harness.Eventually(ctx, 30*time.Second, func(context.Context) bool {
		_, err := os.Stat(blob)
		return os.IsNotExist(err)
	}) {
		t.Fatalf("the deleted manifest %s is still stored after the periodic prunes", deleted)
	}
	// The prune counts what it reclaimed when it finishes, a moment after the file
	// went.
	var reclaimed float64
	if !harness.Eventually(ctx, 30*time.Second, func(context.Context) bool {
		reclaimed, err = env.Metric(`pullgate_registry_prune_reclaimed_objects_total{kind="blob"}`)
		return err == nil && reclaimed >= 1
	}) {
		t.Errorf("prune metrics after reclaiming a blob: %v %v", reclaimed, err)
	}
	served, err = c.Tags(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for tag, d := range acknowledged {
		if served[tag] != d {
			t.Errorf("acknowledged push %s (%s) is served as %q after the periodic prunes", tag, d, served[tag])
		}
	}
}

// addStreamOnlyTag writes into ImageStream ns/app a tag storage never held, as an
// earlier pullgate that recorded before storing could leave after a crash.
func addStreamOnlyTag(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	patch := []byte(`[{"op":"add","path":"/status/tags/-","value":{"tag":"stream-only","items":[{"created":"2026-01-01T00:00:00Z","digest":"sha256:` + strings.Repeat("0", 64) + `"}]}}]`)
	if _, err := env.Kubectl(ctx, "-n", ns, "patch", "imagestreams.image.pullgate.dev", "app", "--subresource=status", "--type=json", "-p", string(patch)); err != nil {
		t.Fatal(err)
	}
}

// annotated is manifest with an annotation naming tag: a manifest of its own.
func annotated(t *testing.T, manifest []byte, tag string) []byte {
	var m map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Error(err)
		return nil
	}
	m["annotations"] = map[string]string{"test.pullgate.dev/tag": tag}
	data, _ := json.Marshal(m)
	return data
}

// SIGTERM lets downloads in flight finish: the registry stops taking new requests,
// the slow clients get every byte, and pullgate exits 0. A second signal exits at
// once, cutting what is still in flight.
func TestSIGTERMLetsDownloadsFinish(t *testing.T) {
	ctx := harness.Context(t, 4*time.Minute)
	ns, token := newProject(t, ctx, env, "drain")
	content := make([]byte, 40<<20)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	push(t, ctx, env, token, env.RegistryHost+"/"+ns+"/big:v1", content)
	c, err := env.RegistryClient(ctx, ns+"/big", token)
	if err != nil {
		t.Fatal(err)
	}
	manifest, _, err := c.Manifest(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(manifest, &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest: %v %s", err, manifest)
	}
	layer := m.Layers[0].Digest

	// Two slow clients have read the first MiB when SIGTERM comes.
	type download struct {
		body io.ReadCloser
		head []byte
	}
	startDownloads := func() []download {
		var out []download
		for range 2 {
			body, err := c.OpenBlob(ctx, layer)
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 1<<20)
			if _, err := io.ReadFull(body, head); err != nil {
				t.Fatal(err)
			}
			out = append(out, download{body, head})
		}
		return out
	}
	notServing := func(ctx context.Context) bool {
		resp, err := http.Get("http://" + env.RegistryHost + "/healthz")
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusOK
	}
	downloads := startDownloads()
	env.Send(syscall.SIGTERM)
	if !harness.Eventually(ctx, 10*time.Second, notServing) {
		t.Fatal("the registry still answers /healthz with 200 after SIGTERM")
	}
	for i, d := range downloads {
		rest, err := io.ReadAll(slowReader{d.body})
		d.body.Close()
		if err != nil {
			t.Fatalf("download %d was cut after SIGTERM: %v", i, err)
		}
		if got := digest.FromBytes(append(d.head, rest...)).String(); got != layer {
			t.Fatalf("download %d after SIGTERM: %d bytes of digest %s, want %s", i, len(d.head)+len(rest), got, layer)
		}
	}
	if err := env.Wait(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("pullgate after draining: %v\n%s", err, env.LogTail(20))
	}

	// Again, with a drain that would last ten minutes: the second signal ends it.
	if err := env.Restart("--drain-timeout", "10m"); err != nil {
		t.Fatal(err)
	}
	c, err = env.RegistryClient(ctx, ns+"/big", token)
	if err != nil {
		t.Fatal(err)
	}
	downloads = startDownloads()
	env.Send(syscall.SIGTERM)
	if !harness.Eventually(ctx, 10*time.Second, notServing) {
		t.Fatal("the registry still answers /healthz with 200 after SIGTERM")
	}
	env.Send(syscall.SIGTERM)
	if err := env.Wait(syscall.SIGTERM, 15*time.Second); err != nil && strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("a second SIGTERM did not end pullgate: %v", err)
	}
	for _, d := range downloads {
		if _, err := io.ReadAll(d.body); err == nil {
			t.Error("a download finished although the second signal should have cut it")
		}
		d.body.Close()
	}
	if err := env.Restart(); err != nil {
		t.Fatal(err)
	}
}

// slowReader reads as a client on a slow link does, 6 MiB a second: 40 MiB take
// longer than a shutdown that does not wait for transfers allows.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	const chunk = 256 << 10
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := s.r.Read(p)
	time.Sleep(time.Duration(n) * time.Second / (6 << 20))
	return n, err
}

// A full disk never takes the control plane down: on a 640 MiB filesystem shared by
// etcd and the registry, pushes are refused with 507 once only the reserve is left,
// etcd keeps taking writes, every acknowledged push is intact, and pullgate up on a
// disk filled by something else refuses to start with one error naming the directory.
func TestFullDiskRefusesPushesAndKeepsTheControlPlane(t *testing.T) {
	dir := smallDisk(t, "640m")
	e, ctx, ns, token := startWithProject(t, harness.Options{DataDir: dir, ExtraArgs: []string{"--registry-storage-reserve", "256MiB"}}, "full")
	cfg, err := e.DockerConfig(t.TempDir(), token)
	if err != nil {
		t.Fatal(err)
	}

	acknowledged := map[string]string{}
	var refusal string
	for i := 0; refusal == "" && i < 40; i++ {
		content := make([]byte, 32<<20)
		_, _ = rand.Read(content)
		image := fmt.Sprintf("%s/%s/fill:%d", e.RegistryHost, ns, i)
		var d string
		harness.Eventually(ctx, 10*time.Second, func(ctx context.Context) bool {
			d, err = harness.PushFile(ctx, cfg, image, content)
			return err == nil || strings.Contains(err.Error(), "STORAGE_FULL")
		})
		switch {
		case err == nil:
			acknowledged[image] = d
		case strings.Contains(err.Error(), "STORAGE_FULL"):
			refusal = err.Error()
		default:
			t.Fatalf("push %d: %v", i, err)
		}
	}
	t.Logf("%d pushes of 32 MiB acknowledged before the registry refused", len(acknowledged))
	if refusal == "" {
		t.Fatal("40 pushes of 32 MiB into 640 MiB were all accepted")
	}
	// The status, as any client sees it.
	c, err := e.RegistryClient(ctx, ns+"/fill", token)
	if err != nil {
		t.Fatal(err)
	}
	// A blob that would reach into the reserve (the refused push left less than 32 MiB above it).
	if _, err := c.PutBlob(ctx, make([]byte, 32<<20)); err == nil || !strings.Contains(err.Error(), "507 Insufficient Storage") {
		t.Errorf("an upload into the reserve: %v, want 507 Insufficient Storage", err)
	} else {
		refusal += "\n" + err.Error()
	}
	for _, want := range []string{"STORAGE_FULL", "registry storage is full", "reserve 256MiB"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, refusal)
		}
	}
	if strings.Contains(refusal, dir) {
		t.Errorf("the refusal shows the server's path %s:\n%s", dir, refusal)
	}

	// etcd still takes writes, and everything acknowledged is whole.
	for i := range 50 {
		if _, err := e.Admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("after-full-", i)}, Data: map[string]string{"k": strings.Repeat("v", 1000)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the API server refuses writes once the registry is full: %v", err)
		}
	}
	for image, d := range acknowledged {
		if out, err := harness.Crane(ctx, cfg, "validate", "--remote", image+"@"+d); err != nil {
			t.Errorf("acknowledged push %s: %v\n%s", image, err, out)
		}
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}

	// Something else fills the disk: up refuses to start, in one line, and keeps its data.
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	port, _ := harness.FreePort()
	res := runUp(t, harness.RunOptions{}, "--data-dir", dir, "--api-port", strconv.Itoa(port))
	assertOneErrorLine(t, res, dir, "free")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := e.Restart(); err != nil {
		t.Fatalf("up after the disk was freed: %v", err)
	}
	if _, err := e.Admin.CoreV1().ConfigMaps(ns).Get(ctx, "after-full-49", metav1.GetOptions{}); err != nil {
		t.Errorf("a write acknowledged on the full disk is gone: %v", err)
	}
}

// fill writes name until the filesystem has no space left.
func fill(t *testing.T, name string) {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// smallDisk is a new directory holding a tmpfs of size: a disk that fills up. The
// test is skipped, saying why, where that cannot be mounted.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a full disk is a small tmpfs, and mounting one needs root: run make test as root (CI does)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s): this machine does not let root mount filesystems", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}
