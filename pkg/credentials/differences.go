package credentials

import "strings"

// Difference is one way pullgate deliberately reads or matches credentials unlike the
// kubelet. Everything else is the kubelet's behaviour exactly, and a differential test
// (test/kubeletdiff) holds pullgate to the kubelet's own code, allowing these only.
type Difference struct {
	ID                       string
	Input, Kubelet, Pullgate string
}

// The deliberate differences, by ID.
const (
	DifferenceBrokenSecret            = "broken-secret"
	DifferenceIgnoredSecret           = "ignored-secret"
	DifferenceDuplicateKey            = "duplicate-key"
	DifferencePodmanSecret            = "podman-secret"
	DifferenceCredentialHelpers       = "credential-helpers"
	DifferenceLocalhostIsNotDockerHub = "localhost-not-docker-hub"
)

// Differences are every deliberate difference, in the order the README lists them.
var Differences = []Difference{
	{DifferenceBrokenSecret, "a pod secret the kubelet cannot read (invalid JSON, a bad `auth`, a field of the wrong type)",
		"every pull of the pod fails", "that secret is skipped and named, with the field at fault, in a `FailedToParseImagePullSecret` event and in the pod's message; the pod's other secrets are used"},
	{DifferenceIgnoredSecret, "an image pull secret of another type (`Opaque` holding `.dockerconfigjson`), or with nothing under its key",
		"ignored in silence", "ignored, named in an event and in the pod's message, with the command that fixes it"},
	{DifferenceDuplicateKey, "the same key twice in one JSON object",
		"the last one wins, in silence", "the secret is not used, as a broken one; the error names the JSON path"},
	{DifferencePodmanSecret, "a `kubernetes.io/podmanconfigjson` secret",
		"ignored", "read as the kubelet reads `kubernetes.io/dockerconfigjson`"},
	{DifferenceCredentialHelpers, "`credHelpers` / `credsStore` in the node's own file",
		"ignored (the empty entries docker writes beside a store are empty credentials)", "run (`docker-credential-<name> get`, 10 s timeout), the empty entries left to the store; never for Secrets"},
	{DifferenceLocalhostIsNotDockerHub, "an image on `localhost/…`, with a credential for `index.docker.io` (docker login's key)",
		"the Docker Hub credential is sent to localhost (it counts a registry with no dot or port as Docker Hub)", "not sent"},
}

// DifferencesTable is Differences as the README's Markdown table.
func DifferencesTable() string {
	var b strings.Builder
	b.WriteString("| | kubelet | pullgate |\n| --- | --- | --- |\n")
	for _, d := range Differences {
		b.WriteString("| " + d.Input + " | " + d.Kubelet + " | " + d.Pullgate + " |\n")
	}
	return b.String()
}
