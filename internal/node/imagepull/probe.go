package imagepull

import (
	"context"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Probe is what a pull of an image would meet, found without downloading anything:
// the registry's challenge, then each credential in the order a pull tries them — a
// token from the token service, then the manifest — until one is let in.
type Probe struct {
	// Realm is the token service the registry's challenge names ("" for Basic
	// authentication or none); TokenHost is its host when it is not the registry's.
	Realm, TokenHost string
	// Withheld says why a credential held for the token service was not sent.
	Withheld string
	Steps    []ProbeStep
	// Err is why the pull would fail (nil when a step succeeded).
	Err *Error
}

// ProbeStep is one credential tried. It never holds the credential or a token.
type ProbeStep struct {
	Credential string `json:"credential"`
	Identity   string `json:"identity,omitempty"`
	// Token is the token service's answer ("" for none asked); Manifest the
	// registry's to a HEAD of the manifest.
	Token    string        `json:"token,omitempty"`
	Manifest string        `json:"manifest,omitempty"`
	OK       bool          `json:"ok"`
	Took     time.Duration `json:"took"`
}

// Probe tries req's credentials as Pull would, with a HEAD of the manifest in place
// of the pull.
func (p *Puller) Probe(ctx context.Context, req Request) Probe {
	var out Probe
	planned := func(pl *plan) {
		out.TokenHost, out.Withheld = pl.tokenHost, pl.withheld
		if realm := bearerRealm(pl.challenge); realm != nil {
			out.Realm = realm.Redacted()
		}
	}
	err := p.tryEach(ctx, req, planned, func(ref name.Reference, pl *plan, a attempt) error {
		step := ProbeStep{Credential: a.sent.Description, Identity: a.sent.Identity}
		start := time.Now()
		rt, err := p.authorize(ctx, ref, pl.challenge, a.sent)
		if out.Realm != "" {
			step.Token = "issued"
			if err != nil {
				step.Token = registryMessage(err)
			}
		}
		if err == nil {
			_, err = remote.Head(ref, remote.WithTransport(rt), remote.WithContext(ctx))
			step.Manifest = "found"
			if err != nil {
				step.Manifest = registryMessage(err)
			}
		}
		step.Took, step.OK = time.Since(start), err == nil
		out.Steps = append(out.Steps, step)
		return err
	})
	if err != nil {
		out.Err = err
	}
	return out
}
