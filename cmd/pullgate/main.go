// Command pullgate runs OpenShift's image-pull-secret model on any Kubernetes
// cluster, or on one machine with `pullgate up`.
package main

import (
	"os"

	"pullgate.dev/pullgate/cmd/pullgate/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:]))
}
