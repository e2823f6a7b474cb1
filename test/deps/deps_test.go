// Package deps keeps the build fast: only the package that embeds the control plane
// (and the binary that links it) may import k8s.io/kubernetes.
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

var mayEmbedKubernetes = map[string]bool{
	"pullgate.dev/pullgate/internal/platform/controlplane": true,
	// The kubelet's credential provider code, run by the node agent.
	"pullgate.dev/pullgate/internal/node/credentialplugins": true,
	"pullgate.dev/pullgate/cmd/pullgate/app":                true,
	"pullgate.dev/pullgate/cmd/pullgate":                    true,
}

func TestOnlyControlPlaneImportsKubernetes(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test=false", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "pullgate.dev/pullgate/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		imports[fields[0]] = fields[1:]
	}
	// A package pulls in k8s.io/kubernetes if it imports it or a pullgate package that does.
	var embeds func(pkg string, seen map[string]bool) bool
	embeds = func(pkg string, seen map[string]bool) bool {
		if seen[pkg] {
			return false
		}
		seen[pkg] = true
		for _, imp := range imports[pkg] {
			if strings.HasPrefix(imp, "k8s.io/kubernetes/") || (strings.HasPrefix(imp, "pullgate.dev/") && embeds(imp, seen)) {
				return true
			}
		}
		return false
	}
	checked := 0
	for pkg := range imports {
		if !strings.HasPrefix(pkg, "pullgate.dev/") || mayEmbedKubernetes[pkg] {
			continue
		}
		checked++
		if embeds(pkg, map[string]bool{}) {
			t.Errorf("%s imports k8s.io/kubernetes (directly or through another package); only %v may", pkg, keys(mayEmbedKubernetes))
		}
	}
	if checked == 0 {
		t.Fatal("no pullgate packages listed")
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
