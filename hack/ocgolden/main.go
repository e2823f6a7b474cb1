// Command ocgolden records test/ocdiff/testdata/oc-golden.json: it runs the oc
// differential cases (test/ocdiff) with a real oc binary against a fresh `pullgate
// up`, and writes what oc printed, exited with and left in the API. Build oc from
// its repository (github.com/openshift/oc, which carries vendor/) with
//
//	CGO_ENABLED=0 GOFLAGS=-mod=vendor go build -tags 'include_gcs include_oss containers_image_openpgp' ./cmd/oc
//
// then: go run ./hack/ocgolden -oc /path/to/oc
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/test/ocdiff"
)

func main() {
	oc := flag.String("oc", "", "the oc binary to record")
	out := flag.String("out", "test/ocdiff/testdata/oc-golden.json", "where to write the recording")
	ocVersion := flag.String("oc-version", "", "what to record as oc's version (default: oc version --client, which says unknown for a build without oc's ldflags)")
	flag.Parse()
	if *oc == "" {
		fail(fmt.Errorf("-oc: give the oc binary to record"))
	}
	version, err := exec.Command(*oc, "version", "--client").Output()
	if err != nil {
		fail(fmt.Errorf("%s version --client: %w", *oc, err))
	}
	env, err := harness.Start(harness.Options{})
	if err != nil {
		fail(err)
	}
	defer env.Close()
	dir, err := os.MkdirTemp("", "ocgolden-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	runner, err := ocdiff.NewRunner(env, *oc, "ocgolden", dir)
	if err != nil {
		fail(err)
	}
	results, err := runner.Run(context.Background())
	if err != nil {
		fail(err)
	}
	recorded := strings.TrimSpace(string(version))
	if *ocVersion != "" {
		recorded = *ocVersion
	}
	data, err := json.MarshalIndent(ocdiff.Golden{OC: recorded, Cases: results}, "", "  ")
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("recorded %d cases from %s\n", len(results), recorded)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ocgolden:", err)
	os.Exit(1)
}
