// Package credentials reads every pull-secret format and answers "which credential
// pulls this image", with the kubelet's semantics (k8s.io/kubernetes
// pkg/credentialprovider), reimplemented here without importing it.
//
// Formats: Docker config.json and Podman auth.json (an "auths" object, plus
// credHelpers/credsStore), the legacy .dockercfg (no "auths" wrapper), and the
// Kubernetes Secret types kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg
// and kubernetes.io/podmanconfigjson.
//
// Matching, as the kubelet does it:
//   - A key is normalised to host[:port][/path]: a missing scheme is assumed, the
//     scheme dropped, and a leading /v1/ or /v2/ removed. "https://quay.io" and
//     "quay.io" are one key; both credentials are kept, in order.
//   - A key matches an image when the ports are equal, the host has as many DNS
//     labels as the image's and each label matches as a glob (so *.example.com
//     matches a.example.com but not a.b.example.com), and the key's path is a plain
//     string prefix of the image's path.
//   - Every match is returned, most specific first (keys in reverse lexical order,
//     as the kubelet sorts them), and the caller tries each until one pulls.
//   - Layers keep their order: pod secrets, then service-account secrets, then the
//     cluster pull secret; within a layer the kubelet's order applies.
//
// Where pullgate deliberately goes further than the kubelet:
//   - The Docker Hub names docker.io, index.docker.io and registry-1.docker.io are one
//     host for matching; the kubelet only falls back to index.docker.io.
//   - An "auth" value is accepted without base64 padding as well as with it.
//   - kubernetes.io/podmanconfigjson secrets are honoured (the kubelet ignores them).
//     Opaque secrets that hold a docker config are reported with a warning and not
//     used, as the kubelet does not use them either.
//   - The same exact key twice in one JSON object is an error naming the source and
//     the key; the kubelet's JSON decoder silently keeps the last one.
//   - credHelpers and credsStore in files are resolved by running
//     docker-credential-<name> (docker-credential-helpers protocol), lazily, when a
//     match is resolved. They are never honoured in Secrets: a node does not run
//     programs that a Secret names. The kubelet ignores helpers everywhere.
//
// Containers/image (podman, skopeo) differs from the kubelet: it matches whole path
// segments and uses one credential. pullgate follows the kubelet, whose choice
// decides what a pod can pull.
package credentials
