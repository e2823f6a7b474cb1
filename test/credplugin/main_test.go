// Package credplugin drives `pullgate credential-provider` through the kubelet's own
// credential provider code (k8s.io/kubernetes pkg/credentialprovider/plugin), with
// real bound service-account tokens from `pullgate up`, then pulls with what it
// returned. Its `up` writes no service-account pull secrets
// (--serviceaccount-pull-secrets=false), as on a cluster whose kubelets use the plugin.
package credplugin

import (
	"os"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{ExtraArgs: []string{"--serviceaccount-pull-secrets=false"}}))
}
