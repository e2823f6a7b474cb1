package explain

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Write prints the report as a tree, for people.
func (r Report) Write(w io.Writer) error {
	p := &printer{w: w}
	switch {
	case r.Pod != "":
		p.line(0, "pod %s (service account %s%s)", r.Pod, r.ServiceAccount, onNode(r.Node))
	case r.ServiceAccount != "":
		p.line(0, "a pod of service account %s", r.ServiceAccount)
	}
	if len(r.Problems) > 0 {
		p.line(0, "problems with the pod's credentials:")
		for _, pr := range r.Problems {
			p.problem(1, pr)
		}
	}
	for _, img := range r.Images {
		p.image(img)
	}
	return p.err
}

func onNode(node string) string {
	if node == "" {
		return ", not scheduled"
	}
	return ", node " + node
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) line(indent int, format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "%s%s\n", strings.Repeat("  ", indent), fmt.Sprintf(format, args...))
	}
}

func (p *printer) problem(indent int, pr Problem) {
	p.line(indent, "! %s", pr.Message)
	if pr.Fix != "" {
		p.line(indent+1, "fix: %s", pr.Fix)
	}
}

func (p *printer) image(img ImageReport) {
	title := "image " + img.Image
	if img.Container != "" {
		title += " (" + img.Container + ")"
	}
	p.line(0, "%s", title)
	if img.PodStatus != "" {
		p.line(1, "now: %s", img.PodStatus)
	}
	p.line(1, "credentials considered, in the kubelet's order:")
	if len(img.Credentials) == 0 {
		p.line(2, "none")
	}
	for _, c := range img.Credentials {
		key := ""
		if c.Key != "" {
			key = fmt.Sprintf(" key %q", c.Key)
		}
		if c.Matched {
			p.line(2, "#%d %s: %s%s, %s: %s", c.Rank, c.Layer, c.Source, key, c.What, c.Why)
		} else {
			p.line(2, "-- %s: %s%s: not matched: %s", c.Layer, c.Source, key, c.Why)
		}
	}
	for _, pr := range img.Problems {
		p.problem(1, pr)
	}
	if d := img.Delegated; d != nil {
		p.line(1, "delegated authentication: tokens from %s (%s); credentials for it: %d, for the registry: %d", d.TokenHost, d.Realm, d.ForTokenHost, d.ForRegistry)
	}
	if i := img.Integrated; i != nil {
		if i.Allowed {
			p.line(1, "integrated registry: %s may pull %s: %s grants %s to %s", i.Identity, i.Repository, i.Binding, i.Role, i.Subject)
		} else {
			p.line(1, "integrated registry: %s may not pull %s", i.Identity, i.Repository)
			if i.Fix != "" {
				p.line(2, "fix: %s", i.Fix)
			}
			if i.AlternativeFix != "" {
				p.line(2, "or, for every service account of the project: %s", i.AlternativeFix)
			}
		}
	}
	if pr := img.Probe; pr != nil {
		p.line(1, "probe:")
		if pr.Realm != "" {
			p.line(2, "registry challenge: token service %s", pr.Realm)
		}
		for i, s := range pr.Steps {
			as := s.Credential
			if s.Identity != "" {
				as += " as " + s.Identity
			}
			var got []string
			if s.Token != "" {
				got = append(got, "token "+s.Token)
			}
			if s.Manifest != "" {
				got = append(got, "manifest "+s.Manifest)
			}
			p.line(2, "%d. %s: %s (%s)", i+1, as, strings.Join(got, ", "), s.Took.Round(time.Millisecond))
		}
		if pr.Error != "" && len(pr.Steps) == 0 {
			p.line(2, "%s", pr.Error)
		}
	}
	if img.OnNode != nil {
		if *img.OnNode {
			p.line(1, "on the node: yes (a pod may use it only if its own credentials could pull it, KEP-2535)")
		} else {
			p.line(1, "on the node: no")
		}
	}
	v := img.Verdict
	switch {
	case v.WouldPull:
		p.line(1, "verdict: would pull, with %s", v.With)
	default:
		p.line(1, "verdict: would not pull: %s", v.Cause)
		if v.Fix != "" {
			p.line(2, "fix: %s", v.Fix)
		}
	}
}
