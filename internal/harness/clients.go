package harness

import (
	"context"
	"fmt"
	"os"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ServiceAccountToken asks the API server for a token of namespace/name (TokenRequest),
// valid for the API server's own audience.
func (e *Env) ServiceAccountToken(ctx context.Context, namespace, name string, audiences ...string) (string, error) {
	expiry := int64(3600)
	tr, err := e.Admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountClient returns a client that acts as service account namespace/name.
func (e *Env) ServiceAccountClient(ctx context.Context, namespace, name string) (kubernetes.Interface, error) {
	token, err := e.ServiceAccountToken(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(e.TokenConfig(token))
}

// TokenConfig is a REST config for this API server that authenticates with token.
func (e *Env) TokenConfig(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(e.AdminConfig)
	cfg.BearerToken = token
	return cfg
}

// Main is TestMain for a package that shares one pullgate: it starts it, stores it
// in *env, runs the tests and stops it. A pullgate that fails to start fails the
// package, with its log.
func Main(m *testing.M, env **Env, opts Options) int {
	e, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness: pullgate up:", err)
		return 1
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "harness: pullgate did not stop cleanly: %v\n%s\n", err, e.LogTail(40))
		if code == 0 {
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "harness: pullgate log tail (%s):\n%s\n", e.DataDir, e.LogTail(60))
	}
	os.RemoveAll(e.DataDir)
	return code
}
