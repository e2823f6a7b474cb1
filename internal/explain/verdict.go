package explain

import (
	"fmt"
	"strings"

	"pullgate.dev/pullgate/internal/node/imagepull"
)

// verdict is the answer for one image: the credential that pulls, or the single most
// likely cause and the command that fixes it.
func verdict(img *ImageReport, problems []Problem, unlinked []Problem, in input) Verdict {
	if img.Verdict.Cause != "" {
		return img.Verdict
	}
	first := firstMatched(img.Credentials)
	if p := img.Probe; p != nil {
		for _, s := range p.Steps {
			if s.OK {
				return Verdict{WouldPull: true, Checked: true, With: s.Credential}
			}
		}
		v := Verdict{Checked: true, Cause: p.Error}
		v.Cause, v.Fix = cause(img, p.Reason, p.Error, problems, unlinked, in)
		return v
	}
	if i := img.Integrated; i != nil {
		if !i.Allowed {
			c, f := cause(img, imagepull.ReasonUnauthorized, "", problems, unlinked, in)
			return Verdict{Cause: c, Fix: f}
		}
		if first == nil {
			return Verdict{Cause: fmt.Sprintf("no credential reaches the integrated registry for %s: the nodes' credential provider is off, and the pod has no pull secret for it", img.Image),
				Fix: fmt.Sprintf("pullgate secrets link %s %s-dockercfg --for=pull -n %s", in.serviceAccount, in.serviceAccount, in.namespace)}
		}
		return Verdict{WouldPull: true, With: describe(*first)}
	}
	if first != nil {
		return Verdict{WouldPull: true, With: describe(*first) + " (not checked: --probe tries it)"}
	}
	if c, f := cause(img, imagepull.ReasonNoCredentialMatched, "", problems, unlinked, in); f != "" {
		return Verdict{Cause: c, Fix: f}
	}
	return Verdict{WouldPull: true, With: "no credential: an anonymous pull (not checked: --probe tries it)"}
}

func firstMatched(cs []Considered) *Considered {
	for i := range cs {
		if cs[i].Matched && cs[i].Rank == 1 {
			return &cs[i]
		}
	}
	return nil
}

func describe(c Considered) string {
	s := c.Source + ", " + c.What
	if c.Key != "" {
		s += ", key " + c.Key
	}
	return s
}

// cause is the most likely cause of a failure of the given reason, and its fix.
func cause(img *ImageReport, reason, message string, problems, unlinked []Problem, in input) (string, string) {
	registry := img.registry()
	if i := img.Integrated; i != nil && !i.Allowed && (reason == imagepull.ReasonUnauthorized || reason == imagepull.ReasonNoCredentialMatched) {
		if i.Fix != "" && !i.Undecided {
			return fmt.Sprintf("%s may not pull %s: no role binding in project %s grants it system:image-puller", i.Identity, i.Repository, projectOf(i.Repository)), i.Fix
		}
		return fmt.Sprintf("%s may not pull %s", i.Identity, i.Repository), i.Fix
	}
	switch reason {
	case imagepull.ReasonNoCredentialMatched, imagepull.ReasonUnauthorized:
		if d := img.Delegated; d != nil && d.ForRegistry == 0 && d.ForTokenHost > 0 {
			return fmt.Sprintf("registry %s delegates authentication to %s, and pull secrets must be defined for both the authentication and registry endpoints: the pod has one for %s only", registry, d.TokenHost, d.TokenHost),
				createAndLink(registry, in)
		}
		if d := img.Delegated; d != nil && d.ForTokenHost == 0 && d.ForRegistry > 0 {
			return fmt.Sprintf("registry %s delegates authentication to %s, and the pod has no pull secret for %s", registry, d.TokenHost, d.TokenHost),
				createAndLink(d.TokenHost, in)
		}
		for _, p := range problems {
			if p.Kind == "wrong-type" && p.Fix != "" {
				return p.Message, p.Fix
			}
		}
		for _, p := range unlinked { // not on the pod, or not linked: for this image
			return p.Message, p.Fix
		}
		for _, p := range problems {
			if p.Kind == "missing" {
				return p.Message, p.Fix
			}
		}
		if reason == imagepull.ReasonUnauthorized {
			if first := firstMatched(img.Credentials); first != nil {
				return fmt.Sprintf("registry %s refused every credential the pod holds for it, first %s: %s", registry, describe(*first), message),
					fmt.Sprintf("pullgate create secret docker-registry NAME --docker-server=%s --docker-username=… --docker-password=… --dry-run=client -o yaml -n %s | kubectl apply -f -", keyOf(first), in.namespace)
			}
		}
		return fmt.Sprintf("no credential the pod holds matches registry %s, and it refuses anonymous pulls", registry), createAndLink(registry, in)
	}
	return message, ""
}

func createAndLink(server string, in input) string {
	ns := in.namespace
	if ns == "" {
		ns = "NAMESPACE"
	}
	sa := in.serviceAccount
	if sa == "" {
		sa = "default"
	}
	fix := fmt.Sprintf("pullgate create secret docker-registry NAME --docker-server=%s --docker-username=… --docker-password=… -n %s && pullgate secrets link %s NAME --for=pull -n %s", server, ns, sa, ns)
	if in.pod != nil {
		fix += " && " + recreate(in.pod, "NAME")
	}
	return fix
}

func keyOf(c *Considered) string {
	if c.NormalizedKey != "" {
		return c.NormalizedKey
	}
	return c.Key
}

func projectOf(repo string) string {
	ns, _, _ := strings.Cut(repo, "/")
	return ns
}
