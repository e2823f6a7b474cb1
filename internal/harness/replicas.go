package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// StartRegistryReplica runs `pullgate registry serve` against the API kubeconfig
// reaches, listening on addr, keeping blobs in s3 and telling clients it is host (a
// balancer in front of several replicas, say); it takes no part in the controllers'
// election. extra is appended to its flags.
func StartRegistryReplica(kubeconfig, dataDir, addr, host string, s3 *S3, extra ...string) (*Process, error) {
	args := append([]string{"registry", "serve", "--kubeconfig", kubeconfig, "--data-dir", dataDir,
		"--listen", addr, "--hostname", host, "--controllers=false"}, s3.StorageParams()...)
	return StartProcess("registry is serving", append(args, extra...)...)
}

// Controllers is one `pullgate controllers` replica and its /healthz address.
type Controllers struct {
	*Process
	Health string
}

var healthLine = regexp.MustCompile(`controllers health on (\S+)`)

// StartControllers runs `pullgate controllers` for the registry named host, with its
// /healthz on a loopback port.
func StartControllers(kubeconfig, host string) (*Controllers, error) {
	p, err := StartProcess("controllers health on", "controllers", "--kubeconfig", kubeconfig,
		"--registry-host", host, "--health-listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Controllers{Process: p, Health: healthLine.FindStringSubmatch(p.Output())[1]}, nil
}

// Leads reports whether this replica's /healthz?verbose says it leads.
func (c *Controllers) Leads() bool {
	return strings.Contains(c.Get("/healthz?verbose"), "this replica (")
}

// Get is the body of a GET of path on the health address (or the error).
func (c *Controllers) Get(path string) string {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + c.Health + path)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// WaitForLeader is the index of the replica that leads, waiting up to timeout for one
// (nil entries are stopped replicas).
func WaitForLeader(replicas []*Controllers, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		for i, c := range replicas {
			if c != nil && c.Leads() {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no controller replica leads after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RegistryToken asks the token service at addr (host:port, plain HTTP) for a registry
// token for scope, logging in with password (a Kubernetes token).
func RegistryToken(ctx context.Context, addr, password, scope string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/token?service=pullgate-registry&scope="+scope, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth("pullgate", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token from %s: %s %v", addr, resp.Status, err)
	}
	return body.Token, nil
}
