package images

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	imagev1 "github.com/openshift/api/image/v1"
	"k8s.io/apimachinery/pkg/util/cache"

	"pullgate.dev/pullgate/pkg/credentials"
)

// Registry reaches the integrated registry as the image API's own account, and
// other registries with a project's credentials.
type Registry struct {
	// Integrated is the integrated registry's host[:port], as its image streams
	// name it.
	Integrated string
	// Auth is the image API's credential at the integrated registry.
	Auth authn.Authenticator
	// Transport carries every request (nil: http.DefaultTransport).
	Transport http.RoundTripper

	described *cache.LRUExpireCache
}

// NewRegistry returns a Registry for the integrated registry at host.
func NewRegistry(host string, auth authn.Authenticator, rt http.RoundTripper) *Registry {
	return &Registry{Integrated: host, Auth: auth, Transport: rt, described: cache.NewLRUExpireCache(4096)}
}

// Integrated names repository (namespace/name) at the integrated registry.
func (r *Registry) Repository(repository string) (name.Repository, error) {
	return name.NewRepository(r.Integrated+"/"+repository, name.Insecure)
}

func (r *Registry) options(ctx context.Context, auth authn.Authenticator) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	return opts
}

// Copy puts the manifest from (in the integrated registry) at to, a tag of another
// of its repositories, mounting its blobs rather than copying them: what oc tag
// does between streams. It returns what to now points at.
func (r *Registry) Copy(ctx context.Context, from name.Digest, to name.Tag) (v1.Descriptor, error) {
	opts := r.options(ctx, r.Auth)
	desc, err := remote.Get(from, opts...)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("reading %s: %w", from, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return v1.Descriptor{}, err
		}
		err = remote.WriteIndex(to, idx, opts...)
		return desc.Descriptor, wrapWrite(to, err)
	}
	img, err := desc.Image()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return desc.Descriptor, wrapWrite(to, remote.Write(to, img, opts...))
}

func wrapWrite(to name.Tag, err error) error {
	if err != nil {
		return fmt.Errorf("writing %s: %w", to, err)
	}
	return nil
}

// Describe is the image ref names, read with auth (the integrated registry's own
// when auth is nil), from a cache when its digest was described before.
func (r *Registry) Describe(ctx context.Context, ref name.Digest, auth authn.Authenticator) (imagev1.Image, error) {
	if img, ok := r.described.Get(ref.DigestStr()); ok {
		return img.(imagev1.Image), nil
	}
	if auth == nil {
		auth = r.Auth
	}
	desc, err := remote.Get(ref, r.options(ctx, auth)...)
	if err != nil {
		return imagev1.Image{}, err
	}
	img, err := describe(desc)
	if err != nil {
		return imagev1.Image{}, fmt.Errorf("describing %s: %w", ref, err)
	}
	r.described.Add(ref.DigestStr(), img, cacheFor)
	return img, nil
}

func describe(desc *remote.Descriptor) (imagev1.Image, error) {
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return imagev1.Image{}, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return imagev1.Image{}, err
		}
		return describeIndex(desc.Digest, m, string(desc.MediaType)), nil
	}
	img, err := desc.Image()
	if err != nil {
		return imagev1.Image{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return imagev1.Image{}, err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return imagev1.Image{}, err
	}
	config, _ := img.ConfigFile() // an artifact's config need not be an image's
	if config != nil && config.Architecture == "" && config.OS == "" && len(config.RootFS.DiffIDs) == 0 {
		config = nil
	}
	return describeImage(desc.Digest, m, string(desc.MediaType), config, raw)
}

// Imported is what an import found.
type Imported struct {
	// Reference is the image, <registry>/<repository>@<digest>.
	Reference name.Digest
	MediaType string
	Image     imagev1.Image
	// Credential says which of the project's credentials read it.
	Credential string
}

// Import reads from (another registry's image) with the first of creds that the
// registry accepts, in order, anonymously when there are none; mode is OpenShift's
// import mode: Legacy takes the platform's image out of an index,
// PreserveOriginal keeps the index.
func (r *Registry) Import(ctx context.Context, from name.Reference, creds credentials.Candidates, mode imagev1.ImportModeType) (Imported, error) {
	list := creds.List
	if len(list) == 0 {
		list = []credentials.Candidate{credentials.NoCredential}
	}
	var tried []error
	for _, c := range list {
		auth := authn.FromConfig(c.AuthConfig)
		desc, err := remote.Get(from, r.options(ctx, auth)...)
		if isRefused(err) {
			tried = append(tried, fmt.Errorf("%s: %w", c.Description, err))
			continue
		}
		if err != nil {
			return Imported{}, &ImportError{From: from.String(), Credential: c.Description, Err: err}
		}
		if desc.MediaType.IsIndex() && mode != imagev1.ImportModePreserveOriginal {
			if desc, err = platformImage(ctx, desc, from, r.options(ctx, auth)); err != nil {
				return Imported{}, &ImportError{From: from.String(), Credential: c.Description, Err: err}
			}
		}
		img, err := describe(desc)
		if err != nil {
			return Imported{}, &ImportError{From: from.String(), Credential: c.Description, Err: err}
		}
		ref := from.Context().Digest(desc.Digest.String())
		r.described.Add(ref.DigestStr(), img, cacheFor)
		return Imported{Reference: ref, MediaType: string(desc.MediaType), Image: img, Credential: c.Description}, nil
	}
	return Imported{}, &ImportError{From: from.String(), Refused: true, Err: errors.Join(append(tried, creds.Problems)...)}
}

// platformImage picks this platform's image out of an index, as OpenShift's Legacy
// import mode does.
func platformImage(ctx context.Context, index *remote.Descriptor, from name.Reference, opts []remote.Option) (*remote.Descriptor, error) {
	idx, err := index.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(want) {
			return remote.Get(from.Context().Digest(d.Digest.String()), opts...)
		}
	}
	return nil, fmt.Errorf("the index %s has no image for %s/%s (import it whole with --import-mode=PreserveOriginal)", index.Digest, want.OS, want.Architecture)
}

// isRefused reports whether a registry refused the credential (401 or 403), when
// the next one may do.
func isRefused(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden)
}

// ImportError says what an import met, with whom, and what fixes it.
type ImportError struct {
	From string
	// Credential is the credential used; empty when every one was refused.
	Credential string
	// Refused is true when the registry refused every credential the project holds.
	Refused bool
	Err     error
}

func (e *ImportError) Error() string {
	host := e.From
	if ref, err := name.ParseReference(e.From); err == nil {
		host = ref.Context().RegistryStr()
	}
	if e.Refused {
		return fmt.Sprintf("importing %s: %s refused every credential the project holds for it (%v); add one: oc create secret docker-registry <name> --docker-server=%s --docker-username=<user> --docker-password=<password>",
			e.From, host, e.Err, host)
	}
	return fmt.Sprintf("importing %s with %s: %v", e.From, e.Credential, e.Err)
}

func (e *ImportError) Unwrap() error { return e.Err }

// TrimScheme drops http:// or https:// from a reference users give.
func TrimScheme(ref string) string {
	return strings.TrimPrefix(strings.TrimPrefix(ref, "https://"), "http://")
}

// cacheFor is how long a description is kept: an image never changes, the bound
// keeps memory in check.
const cacheFor = 24 * time.Hour

// Untag deletes tag from the integrated registry (the manifest stays while
// another tag or the stream's history holds it).
func (r *Registry) Untag(ctx context.Context, tag name.Tag) error {
	err := remote.Delete(tag, r.options(ctx, r.Auth)...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting tag %s: %w", tag, err)
	}
	return nil
}

// FirstCredential is the first of creds, for reads that ask once; anonymous when
// the project holds none for the image.
func FirstCredential(creds credentials.Candidates) authn.Authenticator {
	if len(creds.List) == 0 {
		return authn.Anonymous
	}
	return authn.FromConfig(creds.List[0].AuthConfig)
}

// Tags lists repo's tags, read with auth.
func (r *Registry) Tags(ctx context.Context, repo name.Repository, auth authn.Authenticator) ([]string, error) {
	return remote.List(repo, r.options(ctx, auth)...)
}
