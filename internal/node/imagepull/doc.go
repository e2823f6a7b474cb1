// Package imagepull pulls images over the registry v2 protocol into a node's OCI image
// layout, trying credentials in the order given until one works, as the kubelet does.
// It owns the node's image store (content-addressed, each blob once, partial blobs
// resumed and never trusted), the record of which credentials pulled what (KEP-2535),
// and the one-line, credential-free explanation of why a pull failed.
package imagepull
