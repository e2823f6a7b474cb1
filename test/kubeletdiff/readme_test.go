package kubeletdiff

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"pullgate.dev/pullgate/pkg/credentials"
)

// The README lists exactly the deliberate differences this test allows.
func TestReadmeListsEveryDifference(t *testing.T) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(root)), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), credentials.DifferencesTable()) {
		t.Errorf("the README's table of deliberate differences is not credentials.DifferencesTable():\n%s", credentials.DifferencesTable())
	}
	allowed := map[string]bool{}
	for _, id := range allowedDifferences {
		allowed[id] = true
	}
	for _, d := range credentials.Differences {
		if !allowed[d.ID] {
			t.Errorf("difference %s is documented but the differential test does not allow it", d.ID)
		}
	}
	if len(allowedDifferences) != len(credentials.Differences) {
		t.Errorf("the test allows %d differences, the list has %d", len(allowedDifferences), len(credentials.Differences))
	}
}
