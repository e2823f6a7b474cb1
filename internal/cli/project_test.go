package cli

import (
	"context"
	"strings"
	"testing"
)

// new-project refuses the names the cluster's components reserve before it reaches
// the API, as the project request does.
func TestNewProjectRefusesReservedNames(t *testing.T) {
	s, out, _ := streams()
	for name, want := range map[string]string{"kube-evil": `starting with "kube-"`, "pullgate-node": `starting with "pullgate-"`, "default": `named "default"`} {
		err := newProject(context.Background(), nil, nil, s, name, true)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("new-project %s: %v, want an error saying %q", name, err, want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("a refused new-project printed %q", out.String())
	}
}
