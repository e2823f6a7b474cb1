// Package lifecycle checks how `pullgate up` stops, survives SIGKILL, restarts, and
// refuses bad input, with the real binary.
package lifecycle

import (
	"os"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{}))
}
