// Package e2e drives one real `pullgate up` with kubectl and client-go, as a user would.
package e2e

import (
	"os"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{}))
}
