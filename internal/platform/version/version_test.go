package version

import "testing"

// A build that does not link the control plane (this test) says so, rather than
// naming a Kubernetes version it does not embed.
func TestKubernetesWithoutTheControlPlane(t *testing.T) {
	if got := Kubernetes(); got != "none" {
		t.Errorf("Kubernetes() = %q in a binary without k8s.io/kubernetes", got)
	}
}
