package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/distribution/distribution/v3"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
)

// imageSource serves one image from memory, until down; tamper changes what it
// answers for the manifest.
type imageSource struct {
	img    v1.Image
	down   bool
	tamper bool
	reads  int
}

func (s *imageSource) String() string { return "source.example/org/app" }

func (s *imageSource) Manifest(ctx context.Context, dgst digest.Digest) (string, []byte, error) {
	s.reads++
	if err := ctx.Err(); err != nil { // as a real source: the request is cancelled
		return "", nil, err
	}
	if s.down {
		return "", nil, errors.New("connection refused")
	}
	body, _ := s.img.RawManifest()
	if s.tamper {
		body = bytes.Replace(body, []byte(`"size"`), []byte(` "size"`), 1)
	}
	mt, _ := s.img.MediaType()
	return string(mt), body, nil
}

func (s *imageSource) Blob(ctx context.Context, dgst digest.Digest) (io.ReadCloser, error) {
	s.reads++
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.down {
		return nil, errors.New("connection refused")
	}
	if cfg, _ := s.img.ConfigName(); cfg.String() == dgst.String() {
		raw, _ := s.img.RawConfigFile()
		return io.NopCloser(bytes.NewReader(raw)), nil
	}
	layers, _ := s.img.Layers()
	for _, l := range layers {
		if d, _ := l.Digest(); d.String() == dgst.String() {
			return l.Compressed()
		}
	}
	return nil, errors.New("no such blob")
}

// fakePullThrough imports one image as tag v1 of ns/app (ns b unless set).
type fakePullThrough struct {
	src    *imageSource
	digest digest.Digest
	ns     string
}

func (f *fakePullThrough) namespace() string {
	if f.ns == "" {
		return "b"
	}
	return f.ns
}

func (f *fakePullThrough) Tag(ns, name, tag string) (digest.Digest, bool) {
	return f.digest, ns == f.namespace() && name == "app" && tag == "v1"
}

func (f *fakePullThrough) Source(_ context.Context, ns, name string, dgst digest.Digest) (Source, bool, error) {
	if ns != f.namespace() || name != "app" || dgst != f.digest {
		return nil, false, nil
	}
	return f.src, true, nil
}

func pullThroughRepo(t *testing.T, s *store, pt PullThrough, repo ...string) distribution.Repository {
	t.Helper()
	name := "b/app"
	if len(repo) > 0 {
		name = repo[0]
	}
	r, err := newPullThroughMiddleware(s.ctx, s.repo(name), map[string]any{pullThroughOption: pt})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// An imported tag's image is fetched on first use — manifest and blobs, verified —
// stored, and served from storage once the source is gone; what the stream did not
// import is unknown; a source answering other bytes than the digest stores nothing.
func TestPullThroughStoresWhatItServes(t *testing.T) {
	s := newStore(t)
	img, _ := random.Image(512, 2)
	d, _ := img.Digest()
	src := &imageSource{img: img}
	pt := &fakePullThrough{src: src, digest: digest.Digest(d.String())}
	repo := pullThroughRepo(t, s, pt)

	desc, err := repo.Tags(s.ctx).Get(s.ctx, "v1")
	if err != nil || desc.Digest != pt.digest {
		t.Fatalf("tag v1: %v %v", desc, err)
	}
	ms, _ := repo.Manifests(s.ctx)
	if _, err := ms.Get(s.ctx, pt.digest); err != nil {
		t.Fatalf("first pull: %v", err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		ld, _ := l.Digest()
		if _, err := repo.Blobs(s.ctx).Stat(s.ctx, digest.Digest(ld.String())); err != nil {
			t.Errorf("layer %s not stored: %v", ld, err)
		}
	}

	src.down = true
	reads := src.reads
	again := pullThroughRepo(t, s, pt)
	ms, _ = again.Manifests(s.ctx)
	if _, err := ms.Get(s.ctx, pt.digest); err != nil || src.reads != reads {
		t.Errorf("second pull with the source down: %v (source read %d more times)", err, src.reads-reads)
	}

	if _, err := ms.Get(s.ctx, digest.FromString("not imported")); err == nil {
		t.Error("a digest the stream did not import was served")
	}

	// Project c imported the same image, but its source refuses it: what b stored is
	// not c's.
	denied := &fakePullThrough{src: &imageSource{img: img, down: true}, digest: pt.digest, ns: "c"}
	cms, _ := pullThroughRepo(t, s, denied, "c/app").Manifests(s.ctx)
	if _, err := cms.Get(s.ctx, pt.digest); err == nil {
		t.Error("another project got the image without reading it at the source")
	}
}

func TestPullThroughRefusesATamperedManifest(t *testing.T) {
	s := newStore(t)
	img, _ := random.Image(512, 1)
	d, _ := img.Digest()
	pt := &fakePullThrough{src: &imageSource{img: img, tamper: true}, digest: digest.Digest(d.String())}
	ms, _ := pullThroughRepo(t, s, pt).Manifests(s.ctx)
	if _, err := ms.Get(s.ctx, pt.digest); err == nil {
		t.Fatal("a manifest that is not the digest was served")
	}
	plain, _ := s.repo("b/app").Manifests(s.ctx)
	if ok, _ := plain.Exists(s.ctx, pt.digest); ok {
		t.Error("a tampered manifest was stored")
	}
}

// A client that hangs up mid-fetch does not cancel it: the image is stored whole
// for the next pull, which the source, gone by then, need not answer.
func TestPullThroughOutlivesACancelledPull(t *testing.T) {
	s := newStore(t)
	img, _ := random.Image(512, 2)
	d, _ := img.Digest()
	src := &imageSource{img: img}
	pt := &fakePullThrough{src: src, digest: digest.Digest(d.String())}
	ctx, cancel := context.WithCancel(s.ctx)
	cancel()
	ms, _ := pullThroughRepo(t, s, pt).Manifests(ctx)
	_, _ = ms.Get(ctx, pt.digest) // the client is gone; what it was told does not matter
	src.down = true
	again, _ := pullThroughRepo(t, s, pt).Manifests(s.ctx)
	if _, err := again.Get(s.ctx, pt.digest); err != nil {
		t.Fatalf("after a cancelled first pull, with the source down: %v", err)
	}
}
