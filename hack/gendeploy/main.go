// Command gendeploy writes deploy/generated.yaml: the ImageStream CRD and cluster
// roles, from pullgate's code.
package main

import (
	"fmt"
	"os"

	"pullgate.dev/pullgate/internal/manifests"
	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

func main() {
	data, err := manifests.Generated()
	if err == nil {
		err = atomicfile.Replace("deploy/generated.yaml", data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
