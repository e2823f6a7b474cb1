// Command image builds pullgate's container image with no Docker daemon: one layer
// holding the static pullgate binary and its credential provider plugin, the system's CA bundle and a non-root user,
// put together with go-containerregistry's mutate, then pushed to a registry
// (-push, credentials from the docker config as crane reads it) or written as an OCI
// layout (-oci-layout).
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: not root, no shell, no home.
const (
	uid    = 65532
	binary = "/usr/local/bin/pullgate"
	plugin = "/usr/local/bin/pullgate-credential-provider"
)

func main() {
	bin := flag.String("binary", "bin/pullgate", "the static pullgate binary (CGO_ENABLED=0)")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to trust")
	version := flag.String("version", "dev", "pullgate's version, as a label")
	push := flag.String("push", "", "push the image to this reference (host/repository:tag)")
	ociLayout := flag.String("oci-layout", "", "write the image into this OCI layout directory")
	insecure := flag.Bool("insecure", false, "push over plain HTTP")
	flag.Parse()
	if *push == "" && *ociLayout == "" {
		fail(fmt.Errorf("give -push REF or -oci-layout DIR"))
	}
	img, err := build(*bin, *caBundle, *version)
	if err != nil {
		fail(err)
	}
	digest, err := img.Digest()
	if err != nil {
		fail(err)
	}
	if *ociLayout != "" {
		p, err := layout.Write(*ociLayout, empty.Index)
		if err != nil {
			fail(err)
		}
		if err := p.AppendImage(img); err != nil {
			fail(err)
		}
		fmt.Printf("image %s written to %s\n", digest, *ociLayout)
	}
	if *push != "" {
		var opts []name.Option
		if *insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(*push, opts...)
		if err != nil {
			fail(fmt.Errorf("-push %q: %w", *push, err))
		}
		if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			fail(err)
		}
		fmt.Printf("image %s pushed to %s\n", digest, ref)
	}
}

func build(bin, caBundle, version string) (v1.Image, error) {
	data, err := tarLayer(bin, caBundle)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Config.Entrypoint = []string{binary}
	cfg.Config.User = fmt.Sprintf("%d:%d", uid, uid)
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "XDG_DATA_HOME=/tmp"}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "pullgate",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// tarLayer is the image's one layer, reproducible: fixed times and owners.
func tarLayer(bin, caBundle string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "tmp/", "usr/", "usr/local/", "usr/local/bin/"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data func() ([]byte, error)
	}{
		{"etc/passwd", 0o644, func() ([]byte, error) {
			return fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/tmp:/sbin/nologin\n", uid, uid), nil
		}},
		{"etc/group", 0o644, func() ([]byte, error) { return fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", uid), nil }},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, func() ([]byte, error) { return os.ReadFile(caBundle) }},
		{binary[1:], 0o755, func() ([]byte, error) { return os.ReadFile(bin) }},
		// The kubelet credential provider, which deploy/node installs on every node.
		{plugin[1:], 0o755, func() ([]byte, error) { return os.ReadFile(filepath.Join(filepath.Dir(bin), filepath.Base(plugin))) }},
	}
	for _, f := range files {
		data, err := f.data()
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), tw.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
