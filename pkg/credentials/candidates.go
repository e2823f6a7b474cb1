package credentials

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Candidate is one credential to try for an image, in the order to try them: what
// go-containerregistry sends, with where it came from.
type Candidate struct {
	authn.AuthConfig
	// ID names the credential in pull records (KEP-2535): its holder and a hash of
	// its content, never the content. Empty for no credential.
	ID string
	// Description says where the credential comes from and what it is, never its
	// secret part, e.g. `secret a/pull (key .dockerconfigjson), user "bob"`.
	Description string
	// Identity is who the registry will see, when known, e.g.
	// "system:serviceaccount:a:default".
	Identity string
}

// NoCredential is an anonymous pull.
var NoCredential = Candidate{Description: "no credential"}

// Anonymous reports whether the candidate sends nothing.
func (c Candidate) Anonymous() bool { return c.AuthConfig == (authn.AuthConfig{}) }

// Provider lists the credentials for an image, in the order to try them: one of the
// kubelet's keyrings, or a credential provider. An error is for the image as a whole;
// candidates that could not be made (a helper that failed) are left out and joined
// in Problems.
type Provider interface {
	Candidates(ctx context.Context, image string) (Candidates, error)
	// ForHost lists those held for a host itself, with no path: a token service's.
	ForHost(ctx context.Context, hostport string) Candidates
}

// Candidates are the credentials of one lookup, and what went wrong making some.
type Candidates struct {
	List     []Candidate
	Problems error
}

// Chain is providers in the order the kubelet consults them: every candidate of the
// first, then of the next.
type Chain []Provider

// Candidates implements Provider.
func (c Chain) Candidates(ctx context.Context, image string) (Candidates, error) {
	var out Candidates
	for _, p := range c {
		got, err := p.Candidates(ctx, image)
		if err != nil {
			return Candidates{}, err
		}
		out.List = append(out.List, got.List...)
		out.Problems = errors.Join(out.Problems, got.Problems)
	}
	return out, nil
}

// ForHost implements Provider.
func (c Chain) ForHost(ctx context.Context, hostport string) Candidates {
	var out Candidates
	for _, p := range c {
		got := p.ForHost(ctx, hostport)
		out.List = append(out.List, got.List...)
		out.Problems = errors.Join(out.Problems, got.Problems)
	}
	return out
}

// Candidates implements Provider: every match of image, helpers run.
func (k *Keyring) Candidates(ctx context.Context, image string) (Candidates, error) {
	matches, err := k.Lookup(image)
	if err != nil {
		return Candidates{}, err
	}
	return resolve(ctx, matches), nil
}

// ForHost implements Provider.
func (k *Keyring) ForHost(ctx context.Context, hostport string) Candidates {
	return resolve(ctx, k.LookupHost(hostport))
}

func resolve(ctx context.Context, matches []Match) Candidates {
	var out Candidates
	for _, m := range matches {
		c, err := m.Resolve(ctx, 0)
		if err != nil {
			out.Problems = errors.Join(out.Problems, err)
			continue
		}
		out.List = append(out.List, Candidate{
			AuthConfig:  authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken},
			ID:          CredentialID(m.Source, c),
			Description: fmt.Sprintf("%s, %s", m.Source, c),
		})
	}
	return out
}

// IDs are the IDs of every credential in the keyring: what a pod holds, for pull
// records.
func (k *Keyring) IDs() []string {
	var out []string
	for _, l := range k.layers {
		for _, n := range l.nodes {
			for _, e := range n.entries {
				out = append(out, CredentialID(e.Source, e.Credential))
			}
		}
	}
	return out
}

// ServiceAccountID names, in pull records, a credential that stands for a pod's
// service account: its token, given by a credential provider plugin (KEP-4412). The
// account's UID is part of it, so an account made again — in a namespace deleted and
// made again — is another credential.
func ServiceAccountID(namespace, name, uid string) string {
	return "serviceaccount:" + namespace + "/" + name + "/" + uid
}

// NodeProviderID names, in pull records, a credential a node's credential provider
// plugin gave with no service account: the node's own, which every pod on the node
// holds (as the kubelet treats it).
const NodeProviderID = "credential provider plugin (node)"

// CredentialID names a credential in pull records: its source (a secret by
// namespace, name and UID, so one made again is another) and a hash of its content.
func CredentialID(src Source, c Credential) string {
	holder := src.Kind + ":" + src.Name
	if src.UID != "" {
		holder += "/" + src.UID
	}
	h := sha256.New()
	for _, part := range []string{c.Username, c.Password, c.IdentityToken, c.RegistryToken} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return holder + "#" + hex.EncodeToString(h.Sum(nil)[:12])
}

// Keychain is p as a go-containerregistry authn.Keychain, for callers that want one
// credential: the first candidate for the resource.
func Keychain(p Provider) authn.Keychain { return keychain{p} }

type keychain struct{ p Provider }

func (k keychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), target)
}

func (k keychain) ResolveContext(ctx context.Context, target authn.Resource) (authn.Authenticator, error) {
	var got Candidates
	if _, ok := target.(name.Registry); ok {
		got = k.p.ForHost(ctx, target.RegistryStr())
	} else {
		var err error
		if got, err = k.p.Candidates(ctx, target.String()); err != nil {
			return nil, err
		}
	}
	if len(got.List) == 0 {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(got.List[0].AuthConfig), nil
}
