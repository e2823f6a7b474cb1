// Package scaleout runs pullgate as it runs on a real cluster: one API (`pullgate up`,
// whose own controllers stand aside), blobs in a real S3 server (the Versity S3 Gateway), three
// `registry serve` replicas behind a round-robin load balancer and two `pullgate
// controllers` replicas — then kills replicas and checks that nothing acknowledged is
// lost.
package scaleout

import (
	"os"
	"testing"

	"pullgate.dev/pullgate/internal/harness"
)

var env *harness.Env

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, &env, harness.Options{ExtraArgs: []string{"--leader-elect=false"}}))
}
