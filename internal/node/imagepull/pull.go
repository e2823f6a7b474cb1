package imagepull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"

	"pullgate.dev/pullgate/internal/registry/location"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
	"pullgate.dev/pullgate/pkg/credentials"
)

// Request is one image to pull, with the credentials to try.
type Request struct {
	// Image is read once by the caller, where it entered (a pod's spec).
	Image credentials.Image
	// Credentials are the ones held for the image's registry, tried in order; none
	// means an anonymous pull.
	Credentials []credentials.Candidate
	// RealmCredentials returns the credentials held for a token service on another
	// host than the registry (delegated authentication, the seed's sso.redhat.com).
	// They are tried first, but only under the seed's rule — "pull secrets must be
	// defined for both the authentication and registry endpoints" — so a registry
	// the pod holds no credential for gets none of them.
	RealmCredentials func(host string) []credentials.Candidate
}

// Result is a pull that worked.
type Result struct {
	// Ref is the image's full reference, e.g. "localhost:5000/project-b/app:latest".
	Ref string
	// Digest is what the reference resolved to (an index for multi-platform images).
	Digest v1.Hash
	// Manifest is this node's platform's manifest.
	Manifest v1.Descriptor
	// Size is the image's size: manifest, config and layers.
	Size int64
	// Transferred is how many bytes this pull downloaded.
	Transferred int64
	// Used is the credential that worked; TokenHost the one sent to a token service on
	// another host, if any.
	Used      credentials.Candidate
	TokenHost string
}

// Puller pulls images into a Store.
type Puller struct {
	Store *Store
	// Transport is the base HTTP transport (with the node's trusted CAs).
	Transport http.RoundTripper
	// Parallel is how many blobs are downloaded at a time (default 3, containerd's).
	Parallel int
	// Platform is the node's platform (default linux/GOARCH).
	Platform *v1.Platform
	// IntegratedHosts are the names of pullgate's integrated registry. Its token
	// service is asked for tokens only for images on one of them: a registry elsewhere
	// that names it as its realm is refused.
	IntegratedHosts location.Hosts
}

func (p *Puller) platform() v1.Platform {
	if p.Platform != nil {
		return *p.Platform
	}
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

func (p *Puller) transport() http.RoundTripper {
	if p.Transport != nil {
		return p.Transport
	}
	return http.DefaultTransport
}

// attempt is one credential to try: what is sent, and what the pod holds.
type attempt struct {
	held, sent credentials.Candidate
}

// plan is how one pull will authenticate.
type plan struct {
	challenge *transport.Challenge
	attempts  []attempt
	// tokenHost is the token service's host when it is not the registry's.
	tokenHost string
	// withheld says why credentials held for tokenHost were not sent, if they were not.
	withheld string
}

// plan pings the registry and lists the attempts in order. When the token service
// is on another host, the credentials for that host go first, then the image's —
// only if the pod holds a credential for the image's registry, and never over plain
// HTTP off loopback. A foreign registry whose realm is pullgate's own token service
// is refused outright.
func (p *Puller) plan(ctx context.Context, ref name.Reference, req Request) (*plan, error) {
	reg := ref.Context().Registry
	ch, err := transport.Ping(ctx, reg, p.transport())
	if err != nil {
		return nil, connError(err, reg.RegistryStr(), "")
	}
	pl := &plan{challenge: ch}
	realm := bearerRealm(ch)
	if realm != nil && !strings.EqualFold(realm.Host, reg.RegistryStr()) {
		pl.tokenHost = realm.Host
		if !p.IntegratedHosts.Has(reg.RegistryStr()) && p.IntegratedHosts.Names(ctx, realm) {
			return nil, &Error{Reason: ReasonForeignRealm, Message: fmt.Sprintf(
				"registry %s names pullgate's own token service (%s) as where to get its tokens; pullgate's tokens are only for pullgate's registry, so no credential or token is sent: pull %s from the registry that holds it",
				reg.RegistryStr(), realm.Redacted(), ref.Context().RepositoryStr())}
		}
		var realmCreds []credentials.Candidate
		if req.RealmCredentials != nil {
			realmCreds = req.RealmCredentials(pl.tokenHost)
		}
		switch {
		case len(realmCreds) == 0:
		case len(req.Credentials) == 0:
			pl.withheld = fmt.Sprintf("the credential for token service %s was not sent, because delegated authentication needs pull secrets for both the authentication and registry endpoints, and none is for registry %s",
				pl.tokenHost, reg.RegistryStr())
		case !secureRealm(realm):
			pl.withheld = fmt.Sprintf("the credential for token service %s was not sent over plain HTTP (%s)", pl.tokenHost, realm.Redacted())
		default:
			for _, c := range realmCreds {
				pl.attempts = append(pl.attempts, attempt{held: c, sent: c})
			}
		}
	}
	held := req.Credentials
	if len(held) == 0 {
		held = []credentials.Candidate{credentials.NoCredential}
	}
	for _, c := range held {
		pl.attempts = append(pl.attempts, attempt{held: c, sent: c})
	}
	return pl, nil
}

// issuedByPullgate reports whether token is a JWT signed by pullgate's token service
// (its issuer claim; the signature is the registry's to check).
func issuedByPullgate(token string) bool {
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.PS256})
	if err != nil {
		return false
	}
	var claims jwt.Claims
	return parsed.UnsafeClaimsWithoutVerification(&claims) == nil && claims.Issuer == tokenauth.Issuer
}

// foreignRealm is err when it refuses a foreign registry's realm, else nil.
func foreignRealm(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.Reason == ReasonForeignRealm {
		return e
	}
	return nil
}

// bearerRealm is the token service a Bearer challenge names, or nil.
func bearerRealm(ch *transport.Challenge) *url.URL {
	if !strings.EqualFold(ch.Scheme, "bearer") {
		return nil
	}
	realm, err := url.Parse(ch.Parameters["realm"])
	if err != nil || realm.Host == "" {
		return nil
	}
	return realm
}

// secureRealm reports whether credentials may be sent to realm: over HTTPS, or to
// this machine.
func secureRealm(realm *url.URL) bool {
	if realm.Scheme == "https" {
		return true
	}
	host := realm.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tryEach is the one credential loop of Pull, Verify and Probe: it plans req.Image's
// pull, then calls try with each attempt in order until one works. A
// registry that names pullgate's token service stops it at once, and so does a
// failure that is not about credentials; its error explains every failure.
func (p *Puller) tryEach(ctx context.Context, req Request, planned func(*plan), try func(ref name.Reference, pl *plan, a attempt) error) *Error {
	ref := req.Image.Ref
	if ref == nil {
		return &Error{Reason: ReasonInvalidImageName, Message: fmt.Sprintf("invalid image reference %q", req.Image.Given)}
	}
	pl, err := p.plan(ctx, ref, req)
	if err != nil {
		return classify(err, ref, "")
	}
	if planned != nil {
		planned(pl)
	}
	var failures []failure
	for _, a := range pl.attempts {
		err := try(ref, pl, a)
		if err == nil {
			return nil
		}
		if foreign := foreignRealm(err); foreign != nil {
			return foreign
		}
		var stored *storeError
		if errors.As(err, &stored) {
			return &Error{Reason: ReasonStore, Message: stored.Error(), Err: stored.err}
		}
		failures = append(failures, failure{cred: a.sent, err: err})
		if !authFailure(err) {
			break
		}
	}
	return explain(ref, pl, len(req.Credentials) == 0, failures)
}

// storeError is the node's store failing after the registry answered: no
// credential's fault, so no other is tried.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }

// Pull pulls req.Image, trying each credential until one works. Its error is an
// *Error.
func (p *Puller) Pull(ctx context.Context, req Request) (*Result, error) {
	var res *Result
	err := p.tryEach(ctx, req, nil, func(ref name.Reference, pl *plan, a attempt) error {
		r, err := p.pullWith(ctx, ref, pl.challenge, a.sent)
		if err != nil {
			return err
		}
		r.Used, r.TokenHost = a.held, pl.tokenHost
		if err := p.Store.Record(r.Manifest.Digest, a.held.ID); err != nil {
			return &storeError{err}
		}
		res = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Verify checks that one of req's credentials can pull the manifest d of
// req.Image, without downloading anything, and records it (KEP-2535).
func (p *Puller) Verify(ctx context.Context, req Request, d v1.Hash) (credentials.Candidate, error) {
	var used credentials.Candidate
	err := p.tryEach(ctx, req, nil, func(ref name.Reference, pl *plan, a attempt) error {
		rt, err := p.authorize(ctx, ref, pl.challenge, a.sent)
		if err != nil {
			return err
		}
		// A GET, not a HEAD: a refusal's body says why.
		if _, err := remote.Get(ref.Context().Digest(d.String()), remote.WithTransport(rt), remote.WithContext(ctx)); err != nil {
			return err
		}
		if err := p.Store.Record(d, a.held.ID); err != nil {
			return &storeError{err}
		}
		used = a.held
		return nil
	})
	if err != nil {
		return credentials.Candidate{}, err
	}
	return used, nil
}

// authorize returns a transport that authenticates to ref's registry with c. For a
// token service, the token is requested here for exactly this repository's pull and
// nothing else, whatever scope the registry's challenges ask for; the transport then
// only ever sends that token, to that registry.
func (p *Puller) authorize(ctx context.Context, ref name.Reference, ch *transport.Challenge, c credentials.Candidate) (http.RoundTripper, error) {
	var auth authn.Authenticator = authn.Anonymous
	if !c.Anonymous() {
		auth = authn.FromConfig(c.AuthConfig)
	}
	reg := ref.Context().Registry
	if bearerRealm(ch) == nil {
		// Basic auth to the registry itself, or none.
		return transport.FromToken(reg, auth, p.schemeTransport(reg, ch), ch, &transport.Token{})
	}
	tok, err := transport.Exchange(ctx, reg, auth, p.schemeTransport(reg, ch), []string{ref.Context().Scope(transport.PullScope)}, ch)
	if err != nil {
		return nil, err
	}
	if tok.Token == "" {
		tok.Token = tok.AccessToken
	}
	// Whatever name a realm on another host went by — another name of the integrated
	// registry's host, an address, a proxy — a token pullgate's token service signed
	// is never sent to any other registry. (A realm on the registry's own host — a
	// proxy in front of pullgate — saw the token pass already: nothing to withhold.)
	if realm := bearerRealm(ch); !strings.EqualFold(realm.Host, reg.RegistryStr()) && !p.IntegratedHosts.Has(reg.RegistryStr()) && issuedByPullgate(tok.Token) {
		return nil, &Error{Reason: ReasonForeignRealm, Message: fmt.Sprintf(
			"registry %s sent this node to pullgate's own token service (as %s) for its tokens; pullgate's tokens are only for pullgate's registry, so the token was not sent: pull %s from the registry that holds it",
			reg.RegistryStr(), realm.Redacted(), ref.Context().RepositoryStr())}
	}
	fixed := authn.FromConfig(authn.AuthConfig{RegistryToken: tok.Token})
	return transport.FromToken(reg, fixed, p.schemeTransport(reg, ch), ch, tok)
}

// schemeTransport is the base transport, talking to the registry over the scheme its
// ping answered on (go-containerregistry guesses http for loopback and private
// names, which may serve HTTPS).
func (p *Puller) schemeTransport(reg name.Registry, ch *transport.Challenge) http.RoundTripper {
	scheme := "https"
	if ch.Insecure {
		scheme = "http"
	}
	return registryScheme{scheme: scheme, host: reg.RegistryStr(), next: p.transport()}
}

// registryScheme sends requests for host over scheme.
type registryScheme struct {
	scheme, host string
	next         http.RoundTripper
}

func (t registryScheme) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.EqualFold(r.URL.Host, t.host) && r.URL.Scheme != t.scheme {
		r = r.Clone(r.Context())
		r.URL.Scheme = t.scheme
	}
	return t.next.RoundTrip(r)
}

func (p *Puller) pullWith(ctx context.Context, ref name.Reference, ch *transport.Challenge, c credentials.Candidate) (*Result, error) {
	rt, err := p.authorize(ctx, ref, ch, c)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(ref, remote.WithTransport(rt), remote.WithContext(ctx), remote.WithPlatform(p.platform()))
	if err != nil {
		return nil, err
	}
	res := &Result{Ref: ref.Name(), Digest: desc.Digest}
	if desc.MediaType.IsIndex() {
		if err := p.Store.PutVerified(desc.Digest, desc.Manifest); err != nil {
			return nil, err
		}
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	manifest, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	mediaType, _ := img.MediaType()
	res.Manifest = v1.Descriptor{MediaType: mediaType, Digest: digest, Size: int64(len(raw))}
	res.Size = res.Manifest.Size + manifest.Config.Size

	scheme := "https"
	if ch.Insecure {
		scheme = "http"
	}
	client := &http.Client{Transport: rt}
	blobs := append([]v1.Descriptor{manifest.Config}, manifest.Layers...)
	var g errgroup.Group
	parallel := p.Parallel
	if parallel <= 0 {
		parallel = 3
	}
	g.SetLimit(parallel)
	transferred := make([]int64, len(blobs))
	for i, b := range blobs {
		if i > 0 {
			res.Size += b.Size
		}
		g.Go(func() error {
			n, err := p.Store.PutBlob(b.Digest, b.Size, p.fetcher(ctx, client, scheme, ref.Context(), b))
			transferred[i] = n
			return err
		})
	}
	err = g.Wait()
	for _, n := range transferred {
		res.Transferred += n
	}
	if err != nil {
		return nil, err
	}
	if err := p.Store.PutVerified(digest, raw); err != nil {
		return nil, err
	}
	if err := p.Store.Tag(res.Ref, res.Manifest); err != nil {
		return nil, err
	}
	return res, nil
}

// fetcher GETs a blob, from offset on when resuming.
func (p *Puller) fetcher(ctx context.Context, client *http.Client, scheme string, repo name.Repository, blob v1.Descriptor) Fetch {
	return func(offset int64) (io.ReadCloser, int64, error) {
		u := url.URL{Scheme: scheme, Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + blob.Digest.String()}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, 0, err
		}
		if offset > 0 && offset < blob.Size {
			// A closed range: some registries (go-containerregistry's) refuse "N-".
			req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-"+strconv.FormatInt(blob.Size-1, 10))
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return resp.Body, 0, nil
		case http.StatusPartialContent:
			return resp.Body, offset, nil
		}
		defer resp.Body.Close()
		return nil, 0, transport.CheckError(resp, http.StatusOK, http.StatusPartialContent)
	}
}
