package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"pullgate.dev/pullgate/internal/platform/listen"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/pkg/credentials"
)

// SeedRegistries are the seed's secured external registries, with a certificate
// from a pullgate CA, reached by name through a NameProxy:
// privateregistry.example.com (Basic auth from an htpasswd file: developer/dev-pass,
// main-user/main-pass, node-user/node-pass) and delegating.example.com, whose tokens
// come from sso.example.com (developer@example.com/sso-pass, who may pull and push
// everything). They hold no image: each test pushes what it needs.
type SeedRegistries struct {
	Private, Delegating, SSO    string
	PrivatePort, DelegatingPort int
	// CAFile signed their certificate; CAEnv makes a client trust it.
	CAFile, CAEnv string
	// PrivateProcess is the private registry, whose log names who pulled what.
	PrivateProcess *Process
	processes      []*Process
	dir            string
}

// The seed registries' users.
var (
	PrivateUsers = map[string]string{"developer": "dev-pass", "main-user": "main-pass", "node-user": "node-pass"}
	SSOUser      = [2]string{"developer@example.com", "sso-pass"}
)

// StartSeedRegistries starts them with a certificate from the CA in caDir (an `up`'s
// DIR/pki, whose node then trusts them).
func StartSeedRegistries(caDir string) (r *SeedRegistries, err error) {
	ca, err := pki.Open(caDir)
	if err != nil {
		return nil, err
	}
	cert, err := ca.ServingCert("seed-registries", []string{"privateregistry.example.com", "delegating.example.com", "sso.example.com"})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pullgate-seed-registries-")
	if err != nil {
		return nil, err
	}
	r = &SeedRegistries{CAFile: filepath.Join(ca.Path, pki.CAFile), dir: dir}
	r.CAEnv = "SSL_CERT_FILE=" + r.CAFile
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	ports, err := listen.FreePorts(3)
	if err != nil {
		return nil, err
	}
	tlsArgs := []string{"--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile}
	start := func(ready string, args ...string) (*Process, error) {
		p, err := StartProcess(ready, append(args, tlsArgs...)...)
		if err == nil {
			r.processes = append(r.processes, p)
		}
		return p, err
	}

	htpasswd := filepath.Join(dir, "htpasswd")
	if err := WriteHtpasswd(htpasswd, PrivateUsers); err != nil {
		return nil, err
	}
	r.PrivatePort, r.DelegatingPort = ports[0], ports[2]
	r.Private = fmt.Sprintf("privateregistry.example.com:%d", ports[0])
	if r.PrivateProcess, err = start("registry is serving", "registry", "serve", "--standalone", "--htpasswd", htpasswd,
		"--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--data-dir", filepath.Join(dir, "private")); err != nil {
		return nil, err
	}

	r.SSO = fmt.Sprintf("sso.example.com:%d", ports[1])
	r.Delegating = fmt.Sprintf("delegating.example.com:%d", ports[2])
	ssoUsers := filepath.Join(dir, "sso-htpasswd")
	if err := WriteHtpasswd(ssoUsers, map[string]string{SSOUser[0]: SSOUser[1]}); err != nil {
		return nil, err
	}
	ssoDir := filepath.Join(dir, "sso")
	if _, err := start("token server is serving", "token-server", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--data-dir", ssoDir,
		"--htpasswd", ssoUsers, "--grant", SSOUser[0]+"=*:pull,push", "--service", "delegating", "--issuer", "sso"); err != nil {
		return nil, err
	}
	if _, err := start("registry is serving", "registry", "serve", "--standalone", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--data-dir", filepath.Join(dir, "delegating"), "--token-realm", "https://"+r.SSO+"/token", "--token-service", "delegating",
		"--token-issuer", "sso", "--token-jwks", filepath.Join(ssoDir, "jwks.json")); err != nil {
		return nil, err
	}
	return r, nil
}

// Stop stops them and removes what they stored.
func (r *SeedRegistries) Stop() {
	for _, p := range r.processes {
		p.Stop()
	}
	os.RemoveAll(r.dir)
}

// PulledBy is the user the private registry's log names for a successful GET or
// HEAD of repo's manifest ref (a tag or digest), or "" if there is none.
func (r *SeedRegistries) PulledBy(repo, ref string) string {
	if users := r.Pullers(repo, ref); len(users) > 0 {
		return users[0]
	}
	return ""
}

// Pullers are the users the private registry's log names for every successful GET
// or HEAD of repo's manifest ref, in order.
func (r *SeedRegistries) Pullers(repo, ref string) []string {
	want := "path=/v2/" + repo + "/manifests/" + ref + " status=200 user="
	var out []string
	for _, line := range strings.Split(r.PrivateProcess.Output(), "\n") {
		if _, user, ok := strings.Cut(line, want); ok {
			user, _, _ = strings.Cut(user, " ")
			out = append(out, user)
		}
	}
	return out
}

// WriteHtpasswd writes an htpasswd file (bcrypt) with user → password.
func WriteHtpasswd(file string, users map[string]string) error {
	var b strings.Builder
	for u, p := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, hash)
	}
	return os.WriteFile(file, []byte(b.String()), 0o600)
}

// DockerConfigJSON is a docker config.json with key → (user, password).
func DockerConfigJSON(entries map[string][2]string) ([]byte, error) {
	var data []byte
	var err error
	for key, up := range entries {
		if data, err = credentials.SetAuth(data, key, credentials.Credential{Username: up[0], Password: up[1]}, credentials.Docker); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// BasicDockerConfig writes DockerConfigJSON(entries) into a new directory under dir,
// and returns the directory (for DOCKER_CONFIG).
func BasicDockerConfig(dir string, entries map[string][2]string) (string, error) {
	data, err := DockerConfigJSON(entries)
	if err != nil {
		return "", err
	}
	out, err := os.MkdirTemp(dir, "docker-config-")
	if err != nil {
		return "", err
	}
	return out, os.WriteFile(filepath.Join(out, "config.json"), data, 0o600)
}
