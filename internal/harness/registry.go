package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"pullgate.dev/pullgate/pkg/credentials"
)

// Tool returns a test tool installed by `make tools` into bin/ (crane, …), or the
// path in the environment variable named like it in upper case.
func Tool(name string) (string, error) {
	if p := os.Getenv(strings.ToUpper(name)); p != "" {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	path := filepath.Join(root, "bin", name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s is not installed: run make tools", name)
	}
	return path, nil
}

// DockerConfig writes a docker config.json in a new directory under dir, logged in
// to the integrated registry with token as the password, as `docker login` would,
// and returns the directory (for DOCKER_CONFIG).
func (e *Env) DockerConfig(dir, token string) (string, error) {
	cfgDir, err := os.MkdirTemp(dir, "docker-config-")
	if err != nil {
		return "", err
	}
	data, err := credentials.SetAuth(nil, e.RegistryHost, credentials.Credential{Username: "pullgate", Password: token}, credentials.Docker)
	if err != nil {
		return "", err
	}
	return cfgDir, os.WriteFile(filepath.Join(cfgDir, "config.json"), data, 0o600)
}

// Crane runs crane with DOCKER_CONFIG=dockerConfig (empty: no credentials) and
// returns its combined output.
func Crane(ctx context.Context, dockerConfig string, args ...string) (string, error) {
	return CraneEnv(ctx, dockerConfig, nil, args...)
}

// CraneEnv is Crane with more environment variables.
func CraneEnv(ctx context.Context, dockerConfig string, extraEnv []string, args ...string) (string, error) {
	crane, err := Tool("crane")
	if err != nil {
		return "", err
	}
	if dockerConfig == "" {
		// An empty directory: crane refuses a DOCKER_CONFIG it cannot read.
		empty, err := os.MkdirTemp("", "no-credentials-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(empty)
		dockerConfig = empty
	}
	cmd := exec.CommandContext(ctx, crane, args...)
	cmd.Env = append(append(os.Environ(), "DOCKER_CONFIG="+dockerConfig), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("crane %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Metric reads one sample (name with its labels, as exported) from the registry's
// /metrics, where `up` also exports the node agent's metrics.
func (e *Env) Metric(name string) (float64, error) {
	resp, err := http.Get("http://" + e.RegistryHost + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			return v, err
		}
	}
	return 0, fmt.Errorf("metric %s not exported", name)
}
