// Command pullgate-credential-provider is pullgate's kubelet credential provider
// plugin as a small binary of its own: the kubelet execs it for every pull it is
// configured for, so it starts in milliseconds, where the full pullgate binary (same
// plugin: `pullgate credential-provider`) spends ~0.2 s initialising the embedded
// Kubernetes.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"pullgate.dev/pullgate/internal/node/credprovider"
)

func main() {
	var hosts []string
	flags := flag.NewFlagSet("pullgate-credential-provider", flag.ContinueOnError)
	flags.Func("registry-host", "host[:port] of pullgate's integrated registry (repeatable, or comma-separated)", func(v string) error {
		hosts = append(hosts, strings.Split(v, ",")...)
		return nil
	})
	if err := flags.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if len(hosts) == 0 {
		fmt.Fprintln(os.Stderr, "error: --registry-host: give at least one host[:port] of the integrated registry")
		os.Exit(2)
	}
	if err := (credprovider.Plugin{RegistryHosts: hosts}).Run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
