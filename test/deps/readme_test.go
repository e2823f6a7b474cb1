package deps

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's Layout table names every package of the module, and names nothing
// that does not exist.
func TestReadmeLayoutMatchesTheTree(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := strings.TrimSpace(string(root))
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README has no Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(layout, -1) {
		path := strings.TrimSuffix(m[1], "/")
		listed[path] = true
		if _, err := os.Stat(filepath.Join(dir, path)); err != nil {
			t.Errorf("the Layout table lists %s, which does not exist", path)
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "./...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkgDir := range strings.Fields(string(out)) {
		rel, _ := filepath.Rel(dir, pkgDir)
		covered := false
		for p := rel; p != "." && p != ""; p = filepath.Dir(p) {
			if listed[p] {
				covered = true
				break
			}
		}
		if !covered {
			t.Errorf("package %s is not in the README's Layout table", rel)
		}
	}
}
