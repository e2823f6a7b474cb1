package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	buildOnce sync.Once
	buildErr  error
)

// Binary returns the pullgate binary under test: $PULLGATE_BIN as `make` sets it, or
// bin/pullgate after running `make build` (incremental) in the module root.
func Binary() (string, error) {
	if bin := os.Getenv("PULLGATE_BIN"); bin != "" {
		return bin, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	buildOnce.Do(func() {
		cmd := exec.Command("make", "-s", "-C", root, "build")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make build: %w\n%s", err, out)
		}
	})
	return filepath.Join(root, "bin", "pullgate"), buildErr
}

// KubectlBinary returns the kubectl of the embedded Kubernetes release: $KUBECTL, or
// bin/kubectl made by `make build`.
func KubectlBinary() (string, error) {
	if k := os.Getenv("KUBECTL"); k != "" {
		return k, nil
	}
	if _, err := Binary(); err != nil {
		return "", err
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "kubectl"), nil
}

// ModuleRoot is the pullgate module's directory (go env GOMOD's).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errNoModule
	}
	return filepath.Dir(gomod), nil
}
