package harness

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is another pullgate command run for a test (e.g. registry serve).
type Process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	output bytes.Buffer
	done   chan struct{}
}

// StartProcess runs the pullgate binary with args and waits until a line of its
// stdout starts with ready.
func StartProcess(ready string, args ...string) (*Process, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	p := &Process{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stdout, w := io.Pipe()
	p.cmd.Stdout = io.MultiWriter(p, w) // kept before the ready line is seen
	p.cmd.Stderr = p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = p.cmd.Wait()
		w.Close()
		close(p.done)
	}()
	found := watchForLine(stdout, ready)
	select {
	case <-found:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("pullgate %s exited before ready:\n%s", strings.Join(args, " "), p.Output())
	case <-time.After(startTimeout):
		p.Stop()
		return nil, fmt.Errorf("pullgate %s not ready after %s:\n%s", strings.Join(args, " "), startTimeout, p.Output())
	}
}

func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

// Output is everything the process wrote.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// Signal sends sig and returns at once.
func (p *Process) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM and waits, then SIGKILL after stopTimeout.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL, as a crash would, and waits until the process is gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
