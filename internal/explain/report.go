// Package explain answers why a pod can or cannot pull an image, and the one command
// that fixes it: the credentials the kubelet would consider, in its order and with
// the rule that matched each or not; problems with the pod's secrets; the RBAC
// decision of the integrated registry, made by the token service's own authorizer;
// an optional live probe of the registry; the image on the pod's node; and a verdict.
// Its Report is also the documented JSON/YAML schema of `pullgate explain pull -o`.
package explain

import (
	"pullgate.dev/pullgate/internal/node/imagepull"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Report is the answer for every image of a pod, or for one image.
type Report struct {
	// Pod is namespace/name, when a pod was explained.
	Pod string `json:"pod,omitempty"`
	// ServiceAccount is namespace/name of the identity the pull uses.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Node is the node the pod is bound to.
	Node string `json:"node,omitempty"`
	// Problems are with the pod's credentials as a whole (secrets missing, of the
	// wrong type, broken, on the service account but not on the pod).
	Problems []Problem     `json:"problems,omitempty"`
	Images   []ImageReport `json:"images"`
}

// WouldPull reports whether every image would pull.
func (r Report) WouldPull() bool {
	for _, img := range r.Images {
		if !img.Verdict.WouldPull {
			return false
		}
	}
	return true
}

// Problem is one thing wrong with a credential source, and its fix.
type Problem struct {
	// Kind is one of missing, wrong-type, broken, unreadable, not-on-pod, not-linked.
	Kind    string `json:"kind"`
	Secret  string `json:"secret,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// ImageReport is the answer for one image.
type ImageReport struct {
	Image string `json:"image"`
	// Container is the container (init, ephemeral) that uses it, for a pod.
	Container string `json:"container,omitempty"`
	// Credentials are every credential considered, in the kubelet's order: those that
	// match first (Rank from 1), then the others.
	Credentials []Considered `json:"credentials"`
	// Delegated is the registry's token service when it is on another host.
	Delegated *Delegated `json:"delegated,omitempty"`
	// Integrated is the RBAC decision, for an image of the integrated registry.
	Integrated *Integrated `json:"integrated,omitempty"`
	// Probe is the live probe, when asked for.
	Probe *Probe `json:"probe,omitempty"`
	// OnNode says whether the pod's node has the image (from the node's status).
	OnNode *bool `json:"onNode,omitempty"`
	// Problems are the namespace's secrets that would give this image a credential
	// but that the pod does not hold (not-on-pod, not-linked).
	Problems []Problem `json:"problems,omitempty"`
	// PodStatus is the container's waiting reason and message, when it has one.
	PodStatus string  `json:"podStatus,omitempty"`
	Verdict   Verdict `json:"verdict"`

	// parsed is Image as read once, when the report was filled in.
	parsed credentials.Image
}

// registry is the image's registry host, for messages (the image as written when it
// could not be read).
func (r *ImageReport) registry() string {
	if r.parsed.Ref == nil {
		return r.Image
	}
	return r.parsed.Ref.Context().RegistryStr()
}

// Considered is one credential weighed for the image. It never holds the secret.
type Considered struct {
	// Source is where it is: a secret (with its data key), the cluster pull secret,
	// or the credential provider.
	Source string `json:"source"`
	// Layer is the kubelet's keyring: pod secrets, node, credential provider.
	Layer string `json:"layer"`
	// Key is the registry key as written, and in the kubelet's form.
	Key           string `json:"key,omitempty"`
	NormalizedKey string `json:"normalizedKey,omitempty"`
	// What is the kind of credential, e.g. `user "bob"`, never its value.
	What    string `json:"what"`
	Matched bool   `json:"matched"`
	Rank    int    `json:"rank,omitempty"`
	// Why is the rule that matched or failed.
	Why string `json:"why"`
}

// Delegated is a token service on another host than the registry.
type Delegated struct {
	Realm     string `json:"realm"`
	TokenHost string `json:"tokenHost"`
	// ForTokenHost and ForRegistry count the credentials for each endpoint.
	ForTokenHost int `json:"forTokenHost"`
	ForRegistry  int `json:"forRegistry"`
}

// Integrated is the integrated registry's decision for the pod's service account.
type Integrated struct {
	Repository string `json:"repository"`
	Identity   string `json:"identity"`
	Allowed    bool   `json:"allowed"`
	// Undecided is set when the user may not read RBAC, so no decision was made.
	Undecided bool `json:"undecided,omitempty"`
	// Binding, Role and Subject are what allows it.
	Binding string `json:"binding,omitempty"`
	Role    string `json:"role,omitempty"`
	Subject string `json:"subject,omitempty"`
	// Fix and AlternativeFix grant the missing role, when refused.
	Fix            string `json:"fix,omitempty"`
	AlternativeFix string `json:"alternativeFix,omitempty"`
}

// Probe is the live probe of the registry.
type Probe struct {
	Realm string                `json:"realm,omitempty"`
	Steps []imagepull.ProbeStep `json:"steps"`
	// Error is why the pull would fail, and its reason (imagepull's reasons).
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Verdict is the answer.
type Verdict struct {
	WouldPull bool `json:"wouldPull"`
	// Checked is true when a live probe confirmed it.
	Checked bool `json:"checked"`
	// With is the credential that pulls; Cause why it would not; Fix the command.
	With  string `json:"with,omitempty"`
	Cause string `json:"cause,omitempty"`
	Fix   string `json:"fix,omitempty"`
}
