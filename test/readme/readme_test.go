// Package readme runs the README's commands as a new user pastes them: every `sh`
// block, in order, verbatim, in one shell, against a `make up` of its own with a home
// directory of its own.
package readme

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pullgate.dev/pullgate/internal/harness"
)

// notRunHere are the blocks (by their first line) this test cannot run, and why; each
// must still be in the README, so the list cannot go stale.
var notRunHere = map[string]string{
	`make up`:                               "started by this test, in the background, as the blocks' up",
	`sudo make up UP_ARGS="--node kubelet"`: "needs root and containerd: test/realnode runs up --node kubelet",
	`make test`:                             "is the command that runs this test",
	`make image IMAGE=registry.example.com/pullgate/pullgate:v1`:                         "installs on a real cluster with S3 and a registry host of its own: test/realnode's TestDeployOnTheRealNode runs these steps on up --node kubelet",
	`# privateregistry.example.com: a registry with htpasswd users (bcrypt), Basic auth`: "starts servers that run until stopped, on fixed ports: the e2e tests' seed registries run them",
	`make bench`: "the benchmarks: make bench runs them",
}

type block struct {
	line int // of the opening fence
	text string
}

// shBlocks are README's ```sh blocks, in order.
func shBlocks(readme string) []block {
	var out []block
	var cur *block
	for i, line := range strings.Split(readme, "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &block{line: i + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	return out
}

// firstLine is a block's first line without its trailing comment.
func firstLine(s string) string {
	line := strings.TrimSpace(strings.SplitN(s, "\n", 2)[0])
	if i := strings.Index(line, " #"); i > 0 {
		line = strings.TrimSpace(line[:i])
	}
	return line
}

// The README's commands run, in order, verbatim, and exit 0.
func TestREADMECommandsRun(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(string(readme))
	seen := map[string]bool{}
	script := &strings.Builder{}
	script.WriteString("set -eo pipefail\n")
	for _, b := range blocks {
		first := firstLine(b.text)
		if reason, ok := notRunHere[first]; ok {
			seen[first] = true
			t.Logf("README line %d (%s) is not run here: %s", b.line, first, reason)
			continue
		}
		fmt.Fprintf(script, "echo '### README line %d'\n%s", b.line, b.text)
	}
	for first := range notRunHere {
		if !seen[first] {
			t.Errorf("the README has no sh block starting %q any more: take it out of notRunHere", first)
		}
	}
	if strings.Count(script.String(), "### README line") < 7 {
		t.Fatalf("only %d README blocks to run: the fences changed?\n%s", strings.Count(script.String(), "### README line"), script)
	}
	for _, port := range []string{"6443", "5000"} {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Skipf("port %s is in use (another pullgate up?): the README's commands name up's default ports", port)
		}
		l.Close()
	}

	ctx := harness.Context(t, 15*time.Minute)
	home := t.TempDir()
	env := userEnv(t, home)
	up := startMakeUp(t, ctx, root, env)
	t.Cleanup(up.stop)

	before, _ := exec.Command("git", "-C", root, "status", "--porcelain").Output()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir, cmd.Env = root, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's commands failed (%v); what they printed:\n%s\nup's log (tail):\n%s", err, out, up.tail())
	}
	for _, want := range []string{"sha256:", "refused: default may not push", "reclaimed "} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the README's commands never printed %q:\n%s", want, out)
		}
	}
	if after, err := exec.Command("git", "-C", root, "status", "--porcelain").Output(); err == nil && !bytes.Equal(before, after) {
		t.Errorf("the README's commands changed the repository's files:\n%s", after)
	}
}

// userEnv is this environment as a new user of the machine has it: a home of its
// own (so ~/.local/share/pullgate and ~/.docker are new), no kubeconfig or XDG
// setting, and Go's caches where they are (so make up builds nothing again).
func userEnv(t *testing.T, home string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "HOME" || k == "KUBECONFIG" || k == "DOCKER_CONFIG" || k == "TMPDIR" || strings.HasPrefix(k, "XDG_") {
			continue
		}
		env = append(env, kv)
	}
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, v+"="+strings.TrimSpace(string(out)))
	}
	tmp := filepath.Join(home, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	return append(env, "HOME="+home, "TMPDIR="+tmp)
}

// makeUp is `make up` running in its own process group.
type makeUp struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func startMakeUp(t *testing.T, ctx context.Context, root string, env []string) *makeUp {
	t.Helper()
	m := &makeUp{cmd: exec.Command("make", "up"), done: make(chan struct{})}
	m.cmd.Dir, m.cmd.Env = root, env
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = pw, pw
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ready := make(chan struct{})
	go func() {
		defer close(m.done)
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for s.Scan() {
			m.mu.Lock()
			m.log.WriteString(s.Text() + "\n")
			m.mu.Unlock()
			if strings.HasPrefix(s.Text(), "pullgate is ready: ") {
				once.Do(func() { close(ready) })
			}
		}
		_ = m.cmd.Wait()
	}()
	select {
	case <-ready:
		return m
	case <-m.done:
		t.Fatalf("make up ended before it was ready:\n%s", m.tail())
	case <-ctx.Done():
		m.stop()
		t.Fatalf("make up was not ready in time:\n%s", m.tail())
	}
	return nil
}

// stop is Ctrl-C, as the README says; the process group is killed if it lingers.
func (m *makeUp) stop() {
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-m.done:
	case <-time.After(time.Minute):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.done
	}
}

func (m *makeUp) tail() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.log.Bytes()
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}
