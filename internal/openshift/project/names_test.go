package project

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for name, want := range map[string]string{
		"team-a":           "",
		"kube-evil":        `starting with "kube-"`,
		"openshift-config": `starting with "openshift-"`,
		"pullgate-node":    `starting with "pullgate-"`,
		"default":          `named "default"`,
		"Bad_Name":         "project name",
		"kubeflow":         "",
	} {
		err := ValidateName(name)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: got %v, want an error saying %q", name, err, want)
		}
	}
}
