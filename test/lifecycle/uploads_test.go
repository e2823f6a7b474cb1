package lifecycle

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pullgate.dev/pullgate/internal/harness"
)

// Uploads at once cannot take a full disk below its reserve, and nothing is kept of
// an upload nobody can finish: 40 chunked uploads (no length given) of 8 MiB into a
// 512 MiB filesystem that keeps a 256 MiB reserve never leave less than the reserve
// free; each one refused answers 507 with its upload already deleted; an upload
// nobody has written to for 15 minutes is refused as expired and deleted; pullgate adm
// prune with its defaults reclaims every other such upload at once; then a push fits
// again.
func TestUploadsAtOnceKeepTheReserveAndLeaveNothingRefused(t *testing.T) {
	dir := smallDisk(t, "512m")
	const reserve = 256 << 20
	e, ctx, ns, token := startWithProject(t, harness.Options{DataDir: dir, ExtraArgs: []string{"--registry-storage-reserve", "256MiB"}}, "uploads")
	push(t, ctx, e, token, e.RegistryHost+"/"+ns+"/ready:v1", []byte("the role reached the token service"))
	c, err := e.RegistryClient(ctx, ns+"/big", token)
	if err != nil {
		t.Fatal(err)
	}
	uploads := filepath.Join(dir, "registry/storage/docker/registry/v2/repositories", ns, "big/_uploads")
	startFree := free(t, dir)
	t.Logf("%d MiB free before the uploads, reserve %d MiB", startFree>>20, reserve>>20)

	// 40 chunked uploads at once, while the free space is watched.
	var lowest atomic.Int64
	lowest.Store(startFree)
	watching, stopWatching := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watching.Err() == nil {
			var st unix.Statfs_t
			if unix.Statfs(dir, &st) == nil && int64(st.Bavail)*int64(st.Bsize) < lowest.Load() {
				lowest.Store(int64(st.Bavail) * int64(st.Bsize))
			}
			select {
			case <-watching.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	type result struct {
		location string
		status   int
		body     string
	}
	results := make([]result, 40)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			loc, err := c.StartUpload(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			status, body, err := c.PatchStreamed(ctx, loc, bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 8<<20)))
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = result{loc, status, string(body)}
		})
	}
	wg.Wait()
	stopWatching()
	<-watched
	var accepted, refused []result
	for _, r := range results {
		switch r.status {
		case http.StatusAccepted:
			accepted = append(accepted, r)
		case http.StatusInsufficientStorage:
			refused = append(refused, r)
			if !strings.Contains(r.body, "STORAGE_FULL") || !strings.Contains(r.body, "nothing of its upload is kept") || strings.Contains(r.body, dir) {
				t.Errorf("a refusal: %s", r.body)
			}
		default:
			t.Errorf("an upload was answered %d: %s", r.status, r.body)
		}
	}
	t.Logf("%d uploads of 8 MiB accepted, %d refused; free space went down to %d MiB (reserve %d MiB)",
		len(accepted), len(refused), lowest.Load()>>20, reserve>>20)
	if len(accepted) == 0 || len(refused) == 0 {
		t.Fatalf("%d accepted, %d refused: the test wants the disk to take some of 320 MiB and refuse the rest", len(accepted), len(refused))
	}
	// etcd writes a little beside the registry meanwhile.
	if lowest.Load() < reserve-(2<<20) {
		t.Errorf("the uploads took free space down to %d MiB, below the %d MiB reserve", lowest.Load()>>20, reserve>>20)
	}
	if n := entries(t, uploads); n != len(accepted) {
		t.Errorf("%d uploads are stored; want only the %d accepted: a refused upload must leave nothing", n, len(accepted))
	}

	// An upload nobody has written to for 15 minutes cannot be resumed, and is gone.
	stale := accepted[0]
	age(t, filepath.Join(uploads, uploadID(stale.location)), 16*time.Minute)
	status, body, err := c.PatchStreamed(ctx, stale.location, strings.NewReader("more"))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusNotFound || !strings.Contains(string(body), "BLOB_UPLOAD_UNKNOWN") || !strings.Contains(string(body), "expired") {
		t.Errorf("resuming an upload idle for 16 minutes: %d %s", status, body)
	}
	if _, err := os.Stat(filepath.Join(uploads, uploadID(stale.location))); !os.IsNotExist(err) {
		t.Errorf("the expired upload is still stored (%v)", err)
	}
	// The others, left by a client that went away, are reclaimed by the next prune.
	for _, r := range accepted[1:] {
		age(t, filepath.Join(uploads, uploadID(r.location)), 16*time.Minute)
	}
	res, err := harness.Run(ctx, harness.RunOptions{}, "adm", "prune", "--confirm", "--data-dir", dir, "--kubeconfig", e.Kubeconfig)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("adm prune: %v exit %d\n%s%s", err, res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Logf("adm prune: %s", strings.TrimSpace(res.Stdout))
	if want := fmt.Sprintf("%d abandoned uploads", len(accepted)-1); !strings.Contains(res.Stdout, want) {
		t.Errorf("adm prune says %q, want %q", res.Stdout, want)
	}
	if n := entries(t, uploads); n != 0 {
		t.Errorf("%d uploads are still stored after the prune", n)
	}
	if after := free(t, dir); after < startFree-(8<<20) {
		t.Errorf("%d MiB free after the prune, %d MiB before the uploads", after>>20, startFree>>20)
	}
	push(t, ctx, e, token, e.RegistryHost+"/"+ns+"/after:v1", bytes.Repeat([]byte("x"), 32<<20))
}

// free is the space an unprivileged writer has left on dir's filesystem.
func free(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// entries counts what is in dir (none when it does not exist).
func entries(t *testing.T, dir string) int {
	t.Helper()
	list, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(list)
}

// uploadID is the upload a Location names: /v2/<repository>/blobs/uploads/<id>?_state=….
func uploadID(location string) string {
	path, _, _ := strings.Cut(location, "?")
	return path[strings.LastIndex(path, "/")+1:]
}

// age sets back the times of everything in dir by d, as if nothing had been written
// to it for that long.
func age(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	when := time.Now().Add(-d)
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}
