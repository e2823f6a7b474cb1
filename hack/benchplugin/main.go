// Command benchplugin measures what the kubelet pays per pull for pullgate's
// credential provider plugin: one exec of `pullgate credential-provider` with a
// request on stdin (p50/p99), beside the kubelet's own timeout for a plugin exec (1
// minute, k8s.io/kubernetes pkg/credentialprovider/plugin) and the exec of /bin/true
// measured the same way, the floor for any plugin.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

const request = `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"localhost:5000/a/app:v1","serviceAccountToken":"eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"}`

func main() {
	bin := flag.String("bin", "bin", "the directory holding pullgate and pullgate-credential-provider")
	runs := flag.Int("runs", 200, "execs per command")
	flag.Parse()
	plugin := measure(*runs, *bin+"/pullgate-credential-provider", "--registry-host", "localhost:5000")
	full := measure(*runs, *bin+"/pullgate", "credential-provider", "--registry-host", "localhost:5000")
	floor := measure(*runs, "/bin/true")
	fmt.Printf("credential provider exec per pull, %d runs (kubelet's timeout per exec: 1m0s)\n", *runs)
	fmt.Printf("  %-48s p50 %-8s p99 %s\n", "pullgate-credential-provider", plugin[0], plugin[1])
	fmt.Printf("  %-48s p50 %-8s p99 %s\n", "pullgate credential-provider (the full binary)", full[0], full[1])
	fmt.Printf("  %-48s p50 %-8s p99 %s\n", "/bin/true, the floor for any plugin (anchor)", floor[0], floor[1])
}

// measure execs name args runs times with the request on stdin and returns p50, p99.
func measure(runs int, name string, args ...string) [2]time.Duration {
	times := make([]time.Duration, 0, runs)
	for range runs {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(request)
		begin := time.Now()
		if out, err := cmd.Output(); err != nil {
			fmt.Fprintf(os.Stderr, "benchplugin: %s: %v %s\n", name, err, out)
			os.Exit(1)
		}
		times = append(times, time.Since(begin))
	}
	slices.Sort(times)
	return [2]time.Duration{times[len(times)/2].Round(100 * time.Microsecond), times[len(times)*99/100].Round(100 * time.Microsecond)}
}
