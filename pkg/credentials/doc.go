// Package credentials reads every pull-secret format and answers "which credential
// pulls this image" exactly as the kubelet does (k8s.io/kubernetes
// pkg/credentialprovider), reimplemented here without importing it and held to it by
// a differential test against the kubelet's own code (test/kubeletdiff).
//
// Formats: the Kubernetes Secret types kubernetes.io/dockerconfigjson and
// kubernetes.io/dockercfg, read as the kubelet reads them (FromSecret); a node's
// config.json, likewise (ParseNodeConfig); and, for files a user gives pullgate's
// CLI, Docker config.json and Podman auth.json (ParseConfig), checked more strictly.
//
// Matching, as the kubelet does it:
//   - A key is normalised to host[:port][/path]: a missing scheme is assumed, the
//     scheme dropped, and a leading /v1/ or /v2/ removed. "https://quay.io" and
//     "quay.io" are one key; both credentials are kept, in order.
//   - An image is looked up by its repository (docker.io/library/ubuntu for ubuntu).
//     A key matches when the ports are equal, the host has as many DNS labels as the
//     image's and each label matches as a glob, and the key's path is a plain string
//     prefix of the image's path.
//   - Every match is returned, most specific first (keys in reverse lexical order);
//     a Docker Hub image that no key matched falls back to index.docker.io.
//   - Each layer is one of the kubelet's keyrings: all of a pod's secrets together,
//     then the node's credentials.
//
// The few deliberate differences are listed, once, in Differences.
//
// Containers/image (podman, skopeo) differs from the kubelet: it matches whole path
// segments and uses one credential. pullgate follows the kubelet, whose choice
// decides what a pod can pull.
package credentials
