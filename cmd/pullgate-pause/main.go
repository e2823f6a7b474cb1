// Command pullgate-pause is the sandbox ("pause") process of the pods on
// `pullgate up --node kubelet`: it holds a pod's namespaces until it is told to stop,
// as Kubernetes' pause does. `up` packs it into a one-layer image and imports it into
// its containerd, so a node with no internet access can start pods.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
