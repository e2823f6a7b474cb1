package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// seedRegistries are the seed's secured external registries, started for one test
// behind the name proxy, with a certificate from up's CA:
// privateregistry.example.com (Basic auth: developer/dev-pass, main-user/main-pass;
// repository-main/app:v1 and other/app:v1) and delegating.example.com, whose tokens
// come from sso.example.com (developer@example.com/sso-pass; team/app:v1).
type seedRegistries struct {
	Private, Delegating, SSO    string
	PrivatePort, DelegatingPort int
	// CAFile signed their certificate; CAEnv makes a client trust it.
	CAFile, CAEnv string
	// PrivateProcess is the private registry, whose log names who pulled what.
	PrivateProcess *harness.Process
}

func startSeedRegistries(t *testing.T, ctx context.Context) *seedRegistries {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Open(filepath.Join(env.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServingCert("seed-registries", []string{"privateregistry.example.com", "delegating.example.com", "sso.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	r := &seedRegistries{CAFile: filepath.Join(ca.Path, pki.CAFile), PrivatePort: freePort(t), DelegatingPort: freePort(t)}
	r.CAEnv = "SSL_CERT_FILE=" + r.CAFile
	tlsArgs := []string{"--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile}

	htpasswd := filepath.Join(dir, "htpasswd")
	writeHtpasswd(t, htpasswd, map[string]string{"developer": "dev-pass", "main-user": "main-pass"})
	r.Private = fmt.Sprintf("privateregistry.example.com:%d", r.PrivatePort)
	r.PrivateProcess = startProcess(t, "registry is serving", append([]string{"registry", "serve", "--standalone", "--htpasswd", htpasswd,
		"--listen", fmt.Sprintf("127.0.0.1:%d", r.PrivatePort), "--data-dir", t.TempDir()}, tlsArgs...)...)
	developer := basicDockerConfig(t, map[string][2]string{r.Private: {"developer", "dev-pass"}})
	for _, repo := range []string{"repository-main/app", "other/app"} {
		pushFile(t, ctx, developer, r.Private+"/"+repo+":v1", []byte(r.Private+"/"+repo+":v1"), r.CAEnv)
	}

	ssoPort := freePort(t)
	r.SSO = fmt.Sprintf("sso.example.com:%d", ssoPort)
	r.Delegating = fmt.Sprintf("delegating.example.com:%d", r.DelegatingPort)
	ssoDir := t.TempDir()
	ssoUsers := filepath.Join(dir, "sso-htpasswd")
	writeHtpasswd(t, ssoUsers, map[string]string{"developer@example.com": "sso-pass"})
	startProcess(t, "token server is serving", append([]string{"token-server", "--listen", fmt.Sprintf("127.0.0.1:%d", ssoPort), "--data-dir", ssoDir,
		"--htpasswd", ssoUsers, "--grant", "developer@example.com=*:pull,push", "--service", "delegating", "--issuer", "sso"}, tlsArgs...)...)
	startProcess(t, "registry is serving", append([]string{"registry", "serve", "--standalone", "--listen", fmt.Sprintf("127.0.0.1:%d", r.DelegatingPort), "--data-dir", t.TempDir(),
		"--token-realm", "https://" + r.SSO + "/token", "--token-service", "delegating", "--token-issuer", "sso", "--token-jwks", filepath.Join(ssoDir, "jwks.json")}, tlsArgs...)...)
	sso := basicDockerConfig(t, map[string][2]string{r.Delegating: {"developer@example.com", "sso-pass"}})
	pushFile(t, ctx, sso, r.Delegating+"/team/app:v1", []byte(r.Delegating+"/team/app:v1"), r.CAEnv)
	return r
}
