// Package e2e drives one real `pullgate up` with kubectl and client-go, as a user would.
package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

// testDomain is where the tests' host names live (privateregistry.example.com, …):
// the harness's name proxy sends them all to this machine, for pullgate and every
// client the tests run, with no /etc/hosts entry and no root.
const testDomain = "example.com"

func TestMain(m *testing.M) {
	proxy, err := harness.StartNameProxy(testDomain)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness: name proxy:", err)
		os.Exit(1)
	}
	for _, kv := range proxy.Env() {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	// Scheduled imports every 2 s rather than OpenShift's 15 min, so that a test sees
	// a scheduled tag follow its source.
	code := harness.Main(m, &env, harness.Options{ExtraArgs: []string{"--image-import-interval=2s"}})
	proxy.Close()
	os.Exit(code)
}
