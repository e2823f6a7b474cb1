package images

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/openshift/api/image/docker10"
	imagev1 "github.com/openshift/api/image/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Described is an image as image.openshift.io/v1 Image describes it, without a
// reference (each stream names it at its own repository).
type Described struct {
	Digest    string
	MediaType string
	// Image is the Image object, its dockerImageReference left for the caller.
	Image imagev1.Image
}

// describeImage builds the Image of a manifest and its config.
func describeImage(digest v1.Hash, manifest *v1.Manifest, mediaType string, config *v1.ConfigFile, rawConfig []byte) (imagev1.Image, error) {
	img := imagev1.Image{
		TypeMeta:                     metav1.TypeMeta{Kind: "Image", APIVersion: "image.openshift.io/v1"},
		ObjectMeta:                   metav1.ObjectMeta{Name: digest.String(), Annotations: map[string]string{"image.openshift.io/dockerLayersOrder": "ascending"}},
		DockerImageManifestMediaType: mediaType,
		DockerImageMetadataVersion:   "1.0",
	}
	size := manifest.Config.Size
	for _, l := range manifest.Layers {
		img.DockerImageLayers = append(img.DockerImageLayers, imagev1.ImageLayer{Name: l.Digest.String(), LayerSize: l.Size, MediaType: string(l.MediaType)})
		size += l.Size
	}
	img.DockerImageConfig = string(rawConfig)
	meta := docker10.DockerImage{
		TypeMeta: metav1.TypeMeta{Kind: "DockerImage", APIVersion: "image.openshift.io/1.0"},
		ID:       digest.String(),
		Size:     size,
	}
	if config != nil {
		meta.Created = metav1.NewTime(config.Created.Time)
		meta.Author = config.Author
		meta.Architecture = config.Architecture
		meta.DockerVersion = config.DockerVersion
		meta.Config = dockerConfig(config.Config)
		img.CreationTimestamp = meta.Created
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		return imagev1.Image{}, fmt.Errorf("image %s: %w", digest, err)
	}
	img.DockerImageMetadata = runtime.RawExtension{Raw: raw}
	return img, nil
}

// describeIndex builds the Image of an index: its manifests, no config.
func describeIndex(digest v1.Hash, index *v1.IndexManifest, mediaType string) imagev1.Image {
	img := imagev1.Image{
		TypeMeta:                     metav1.TypeMeta{Kind: "Image", APIVersion: "image.openshift.io/v1"},
		ObjectMeta:                   metav1.ObjectMeta{Name: digest.String()},
		DockerImageManifestMediaType: mediaType,
		DockerImageMetadataVersion:   "1.0",
	}
	for _, m := range index.Manifests {
		im := imagev1.ImageManifest{Digest: m.Digest.String(), MediaType: string(m.MediaType), ManifestSize: m.Size}
		if m.Platform != nil {
			im.Architecture, im.OS, im.Variant = m.Platform.Architecture, m.Platform.OS, m.Platform.Variant
		}
		img.DockerImageManifests = append(img.DockerImageManifests, im)
	}
	return img
}

func dockerConfig(c v1.Config) *docker10.DockerConfig {
	out := &docker10.DockerConfig{
		User: c.User, Env: c.Env, Cmd: c.Cmd, Entrypoint: c.Entrypoint, WorkingDir: c.WorkingDir,
		Labels: c.Labels, Volumes: c.Volumes, OnBuild: c.OnBuild, Hostname: c.Hostname, Domainname: c.Domainname,
	}
	if len(c.ExposedPorts) > 0 {
		out.ExposedPorts = c.ExposedPorts
	}
	return out
}
