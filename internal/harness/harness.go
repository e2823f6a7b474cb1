// Package harness starts the real pullgate binary for end-to-end tests: once per test
// package (from TestMain), in a temporary data directory, and hands out clients for
// the admin and for any service account. It drives the binary as a user would and
// does not import k8s.io/kubernetes.
//
// It is test support, and imports testing on purpose: TestMain (Main) and the
// helpers that fail a test take *testing.M and testing.TB. The benchmarks under
// hack/ use it too, as programs; importing testing registers no flags (only
// testing.Init does), so they link it at no cost.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ReadyLine is what `pullgate up` prints on stdout once it serves.
const ReadyLine = "pullgate is ready"

const (
	startTimeout = 3 * time.Minute
	stopTimeout  = 15 * time.Second
)

// Env is one running `pullgate up`.
type Env struct {
	Bin          string
	DataDir      string
	APIPort      int
	RegistryPort int
	// RegistryHost is the integrated registry, localhost:<port>.
	RegistryHost string
	Kubeconfig   string
	// Admin is a cluster-admin client; AdminConfig its REST config.
	Admin       kubernetes.Interface
	AdminConfig *rest.Config

	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
	mu      sync.Mutex
}

// Options tune Start.
type Options struct {
	// ExtraArgs are appended to `pullgate up`.
	ExtraArgs []string
	// DataDir is the data directory to use (a small filesystem, say); empty: a new
	// temporary one. Close removes what is in it.
	DataDir string
}

// Start runs `pullgate up` in a new temporary data directory and waits until it is ready.
func Start(opts Options) (*Env, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir := opts.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "pullgate-e2e-"); err != nil {
			return nil, err
		}
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	registryPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	e := &Env{
		Bin: bin, DataDir: dir, APIPort: port, RegistryPort: registryPort,
		RegistryHost: "localhost:" + strconv.Itoa(registryPort),
		Kubeconfig:   filepath.Join(dir, "admin.kubeconfig"), logPath: filepath.Join(dir, "pullgate.log"),
	}
	if err := e.start(opts.ExtraArgs); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// Args are the arguments `pullgate up` was started with.
func (e *Env) Args(extra ...string) []string {
	return append([]string{"up", "--data-dir", e.DataDir, "--api-port", strconv.Itoa(e.APIPort), "--registry-port", strconv.Itoa(e.RegistryPort)}, extra...)
}

func (e *Env) start(extra []string) error {
	logFile, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	stdout, stdoutW := io.Pipe()
	cmd := exec.Command(e.Bin, e.Args(extra...)...)
	cmd.Stdout = io.MultiWriter(logFile, stdoutW)
	cmd.Stderr = logFile
	// If the test binary dies, so does pullgate.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", e.Bin, err)
	}
	e.mu.Lock()
	e.cmd, e.exited, e.waitErr = cmd, make(chan struct{}), nil
	exited := e.exited
	e.mu.Unlock()
	go func() {
		err := cmd.Wait()
		e.mu.Lock()
		e.waitErr = err
		e.mu.Unlock()
		stdoutW.Close()
		logFile.Close()
		close(exited)
	}()

	ready := watchForLine(stdout, ReadyLine)
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("pullgate up exited before ready (%v); log:\n%s", e.waitErr, e.LogTail(40))
	case <-time.After(startTimeout):
		return fmt.Errorf("pullgate up not ready after %s; log:\n%s", startTimeout, e.LogTail(40))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return err
	}
	e.AdminConfig = cfg
	e.Admin, err = kubernetes.NewForConfig(cfg)
	return err
}

// Restart starts pullgate again on the same data directory and port, after Stop or Kill.
func (e *Env) Restart(extra ...string) error {
	return e.start(extra)
}

// Kill sends SIGKILL and waits for the process to go.
func (e *Env) Kill() error {
	return e.Signal(syscall.SIGKILL)
}

// Stop sends SIGTERM and waits for a clean exit; the data directory is kept.
func (e *Env) Stop() error {
	return e.Signal(syscall.SIGTERM)
}

// Signal sends sig and waits, at most 15 s, for pullgate to exit. It returns the
// exit error: nil for a clean exit (always nil for SIGKILL).
func (e *Env) Signal(sig syscall.Signal) error {
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	select {
	case <-exited:
		return e.exitError()
	default:
	}
	_ = cmd.Process.Signal(sig)
	return e.Wait(sig, stopTimeout)
}

// Send sends sig and returns at once.
func (e *Env) Send(sig syscall.Signal) {
	e.mu.Lock()
	cmd := e.cmd
	e.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Wait waits, at most timeout, for pullgate to exit after sig and returns its exit
// error; past timeout it kills pullgate and says so.
func (e *Env) Wait(sig syscall.Signal, timeout time.Duration) error {
	e.mu.Lock()
	cmd, exited := e.cmd, e.exited
	e.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("pullgate did not stop within %s of %v", timeout, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	return e.exitError()
}

func (e *Env) exitError() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.waitErr
}

// Close stops pullgate and removes its data directory.
func (e *Env) Close() error {
	err := e.Stop()
	os.RemoveAll(e.DataDir)
	return err
}

// LogTail returns the last n lines pullgate wrote.
func (e *Env) LogTail(n int) string {
	data, _ := os.ReadFile(e.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kubectl runs the kubectl built from the embedded Kubernetes release against this
// pullgate and returns its combined output.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	kubectl, err := KubectlBinary()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", e.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// watchForLine reads r to its end and closes the returned channel when a line starts
// with prefix.
func watchForLine(r io.Reader, prefix string) <-chan struct{} {
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.HasPrefix(sc.Text(), prefix) {
				close(found)
				signalled = true
			}
		}
	}()
	return found
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var errNoModule = errors.New("not inside the pullgate module")

// Pid is the process ID of `pullgate up`.
func (e *Env) Pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cmd.Process.Pid
}
