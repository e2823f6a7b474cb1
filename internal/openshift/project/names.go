package project

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// reservedPrefixes belong to the cluster's own components, as OpenShift's project
// requests refuse them: a namespace of theirs may hold privileged pods.
var reservedPrefixes = []string{"kube-", "openshift-", "pullgate-"}

// reservedNames are namespaces Kubernetes, OpenShift and pullgate make themselves.
var reservedNames = []string{"default", "kube", "kubernetes", "openshift", "pullgate"}

// ValidateName says why name cannot be requested as a project, or nil: it must be a
// DNS label and not a name the cluster's components reserve. (A namespace that
// exists, or is still terminating, is refused when it is created.)
func ValidateName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("project name %q: %s", name, strings.Join(errs, "; "))
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("cannot request a project starting with %q: names starting with %s are reserved for the cluster's own components", p, strings.Join(reservedPrefixes, ", "))
		}
	}
	for _, n := range reservedNames {
		if name == n {
			return fmt.Errorf("cannot request a project named %q: it is reserved for the cluster's own components", n)
		}
	}
	return nil
}
