package lifecycle

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
)

// runUp runs `pullgate up` expecting it to refuse quickly, and returns its result.
func runUp(t *testing.T, opts harness.RunOptions, args ...string) harness.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	registryPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	res, err := harness.Run(ctx, opts, append([]string{"up", "--registry-port", strconv.Itoa(registryPort)}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("pullgate up %v did not refuse; it ran until killed:\n%s", args, res.Stderr)
	}
	return res
}

// assertOneErrorLine checks a refusal: non-zero exit, exactly one "error:" line,
// naming every fragment in want.
func assertOneErrorLine(t *testing.T, res harness.Result, want ...string) {
	t.Helper()
	if res.ExitCode == 0 {
		t.Fatalf("exit code 0, want non-zero; stderr:\n%s", res.Stderr)
	}
	var errorLines []string
	for _, line := range strings.Split(res.Stderr, "\n") {
		if strings.HasPrefix(line, "error: ") {
			errorLines = append(errorLines, line)
		}
	}
	if len(errorLines) != 1 {
		t.Fatalf("want exactly one error line, got %d; stderr:\n%s", len(errorLines), res.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(errorLines[0], w) {
			t.Errorf("error line %q does not name %q", errorLines[0], w)
		}
	}
}

// A port in use, the API server's or the registry's, is one error naming the address
// and the flag to change, before the data directory is even created.
func TestPortInUse(t *testing.T) {
	for _, flag := range []string{"--api-port", "--registry-port"} {
		t.Run(flag, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			apiPort, _ := harness.FreePort()
			dir := filepath.Join(t.TempDir(), "data")

			args := []string{"--data-dir", dir, "--api-port", strconv.Itoa(apiPort), flag, port}
			res := runUp(t, harness.RunOptions{}, args...)
			// The address, who holds it (this test), and the flag that changes it.
			assertOneErrorLine(t, res, "127.0.0.1:"+port, flag, "held by pid "+strconv.Itoa(os.Getpid()))
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("data dir %s was created by a start that failed on its port", dir)
			}
		})
	}
}

func TestCorruptPKIFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "pki"), os.DirFS(filepath.Join(env.DataDir, "pki"))); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "pki", "apiserver.crt")
	if err := os.WriteFile(corrupt, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := harness.Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := harness.FreePort()

	res := runUp(t, harness.RunOptions{}, "--data-dir", dir, "--api-port", strconv.Itoa(port))
	assertOneErrorLine(t, res, corrupt)
	after, err := harness.Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertKept(t, before, after)
}

func TestDataDirNotWritable(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o555); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "data")
	var opts harness.RunOptions
	if os.Geteuid() == 0 {
		// Root writes anywhere; run as nobody, from a copy of the binary nobody can execute.
		opts.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
		t.Setenv("PULLGATE_BIN", copyExecutable(t))
		if err := os.Chmod(filepath.Dir(parent), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port, _ := harness.FreePort()

	res := runUp(t, opts, "--data-dir", dir, "--api-port", strconv.Itoa(port))
	assertOneErrorLine(t, res, dir, "--data-dir")
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("refused start left %v in %s", entries, parent)
	}
}

func TestDataDirInUse(t *testing.T) {
	before, err := harness.Snapshot(filepath.Join(env.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	port, _ := harness.FreePort()

	res := runUp(t, harness.RunOptions{}, "--data-dir", env.DataDir, "--api-port", strconv.Itoa(port))
	assertOneErrorLine(t, res, env.DataDir, "in use")
	after, _ := harness.Snapshot(filepath.Join(env.DataDir, "pki"))
	assertKept(t, before, after)
}

// assertKept checks that every file of before is still there, unchanged. A refused
// start may add its lock file, nothing else.
func assertKept(t *testing.T, before, after map[string]string) {
	t.Helper()
	for path, sum := range before {
		if after[path] != sum {
			t.Errorf("%s was deleted or overwritten by a refused start", path)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok && path != "pullgate.lock" {
			t.Errorf("a refused start created %s", path)
		}
	}
}

func copyExecutable(t *testing.T) string {
	t.Helper()
	src, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pullgate-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "pullgate")
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return dst
}

// A reserve the registry could fill down to, yet too small for up to start again, is
// refused before anything starts.
func TestStorageReserveBelowWhatUpNeeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	port, _ := harness.FreePort()
	res := runUp(t, harness.RunOptions{}, "--data-dir", dir, "--api-port", strconv.Itoa(port), "--registry-storage-reserve", "100MiB")
	assertOneErrorLine(t, res, "--registry-storage-reserve 100MiB", "256MiB")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir %s was created by a refused start", dir)
	}
}
