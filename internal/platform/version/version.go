// Package version reports pullgate's own version and the Kubernetes version it embeds.
package version

import "runtime/debug"

// Version is pullgate's version, set at build time with
// -ldflags "-X pullgate.dev/pullgate/internal/platform/version.Version=…".
var Version = "dev"

// Kubernetes returns the version of the k8s.io/kubernetes module linked into this
// binary, or "none" for a build that does not embed the control plane.
func Kubernetes() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "k8s.io/kubernetes" {
			return dep.Version
		}
	}
	return "none"
}
