package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"pullgate.dev/pullgate/internal/registry"
	"pullgate.dev/pullgate/internal/registry/imageapi"
	"pullgate.dev/pullgate/pkg/credentials"
)

// PullThrough is the registry's pull-through (registry.PullThrough): it finds in a
// stream the images imported with reference policy Local and reads them at their
// source with the project's pull secrets, chosen and ordered as imports choose them.
type PullThrough struct {
	Streams imageapi.StreamReader
	// Credentials are the project's credentials for an image (ProjectCredentials).
	Credentials func(ctx context.Context, namespace, image string) (credentials.Candidates, error)
	// Transport reaches the sources (default http.DefaultTransport).
	Transport http.RoundTripper
}

// Tag is the digest tag points at, when the tag is an import with reference policy
// Local.
func (p *PullThrough) Tag(namespace, stream, tag string) (digest.Digest, bool) {
	is, ok := p.Streams.Stream(namespace, stream)
	if !ok || !is.PullsThrough(tag) {
		return "", false
	}
	ev, ok := is.Status.Current(tag)
	if !ok || !ev.External() {
		return "", false
	}
	return digest.Digest(ev.Digest), true
}

// Source opens where the stream imported dgst (a tag with reference policy Local,
// now or in its history) with the first of the project's credentials the source
// accepts.
func (p *PullThrough) Source(ctx context.Context, namespace, stream string, dgst digest.Digest) (src registry.Source, ok bool, err error) {
	is, found := p.Streams.Stream(namespace, stream)
	if !found {
		return nil, false, nil
	}
	imported, ok := is.PulledThrough(dgst.String())
	if !ok {
		return nil, false, nil
	}
	ref, err := name.NewDigest(imported.DockerImageReference)
	if err != nil {
		return nil, false, fmt.Errorf("imported from %q: %w", imported.DockerImageReference, err)
	}
	creds, err := p.Credentials(ctx, namespace, ref.String())
	if err != nil {
		return nil, false, err
	}
	list := creds.List
	if len(list) == 0 {
		list = []credentials.Candidate{credentials.NoCredential}
	}
	transport := p.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	var refused []error
	for _, c := range list {
		s := &upstream{repo: ref.Context(), opts: []remote.Option{remote.WithAuth(authn.FromConfig(c.AuthConfig)), remote.WithTransport(transport)}}
		if _, err := remote.Head(ref, append(s.opts, remote.WithContext(ctx))...); isRefused(err) {
			refused = append(refused, fmt.Errorf("%s: %w", c.Description, err))
			continue
		} else if err != nil {
			return nil, false, fmt.Errorf("reading %s with %s: %w", ref, c.Description, err)
		}
		return s, true, nil
	}
	host := ref.Context().RegistryStr()
	return nil, false, fmt.Errorf("%s refused every credential project %s holds for it (%v); add one: oc create secret docker-registry <name> -n %s --docker-server=%s --docker-username=<user> --docker-password=<password>",
		host, namespace, errors.Join(append(refused, creds.Problems)...), namespace, host)
}

// upstream is a repository of another registry, read with one credential.
type upstream struct {
	repo name.Repository
	opts []remote.Option
}

func (u *upstream) String() string { return u.repo.String() }

// Manifest reads manifest dgst; go-containerregistry checks it against dgst.
func (u *upstream) Manifest(ctx context.Context, dgst digest.Digest) (string, []byte, error) {
	desc, err := remote.Get(u.repo.Digest(dgst.String()), append(u.opts, remote.WithContext(ctx))...)
	if err != nil {
		return "", nil, err
	}
	return string(desc.MediaType), desc.Manifest, nil
}

// Blob reads blob dgst; the reader fails at its end if the content is not dgst.
func (u *upstream) Blob(ctx context.Context, dgst digest.Digest) (io.ReadCloser, error) {
	layer, err := remote.Layer(u.repo.Digest(dgst.String()), append(u.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	return layer.Compressed()
}

var _ registry.PullThrough = (*PullThrough)(nil)
