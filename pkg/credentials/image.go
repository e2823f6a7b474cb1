package credentials

import (
	"github.com/google/go-containerregistry/pkg/name"
)

// Image is a container image reference read once, where it enters (a pod's spec, a
// command's argument), and passed down as it is: go-containerregistry's reference,
// to reach its registry, and the repository the kubelet chooses credentials for.
type Image struct {
	// Given is the reference as written.
	Given string
	Ref   name.Reference
	// Repository is the kubelet's reading of it (ImageRepository): what credentials
	// and credential provider plugins are looked up for ("ubuntu:22.04" →
	// "docker.io/library/ubuntu"). Empty when the kubelet's parser refuses what
	// go-containerregistry took: then, as on a kubelet, no credential applies.
	Repository string
}

// ParseImage reads s as a node does, or says why it cannot.
func ParseImage(s string) (Image, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return Image{}, err
	}
	repo, _ := ImageRepository(s)
	return Image{Given: s, Ref: ref, Repository: repo}, nil
}

// String is the reference as written.
func (i Image) String() string { return i.Given }
