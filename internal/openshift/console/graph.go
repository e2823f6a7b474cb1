package console

import (
	"context"
	"fmt"
	"html"
	"math"
	"net/http"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"pullgate.dev/pullgate/internal/rbacauthz"
	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

// edge is a cross-project pull grant: From's service accounts may pull from To.
type edge struct {
	From, To, Binding, Subject string
}

// grants are every cross-project pull grant the user may see: a binding in one
// project letting a service account, or every service account, of another pull.
func (s *Server) grants(ctx context.Context) ([]string, []edge, error) {
	nss, err := s.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	rbs, err := s.client.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	var b rbacauthz.Bindings
	for i := range rbs.Items {
		b.RoleBindings = append(b.RoleBindings, &rbs.Items[i])
	}
	b.RulesOf = s.rulesOf(ctx)
	var names []string
	var edges []edge
	for _, ns := range nss.Items {
		names = append(names, ns.Name)
		for _, g := range rbacauthz.WhoCan(tokenauth.RequestFor("pull", ns.Name, ""), b) {
			from := ""
			switch {
			case g.Subject.Kind == "ServiceAccount":
				from = g.Subject.Namespace
			case g.Subject.Kind == "Group" && strings.HasPrefix(g.Subject.Name, "system:serviceaccounts:"):
				from = strings.TrimPrefix(g.Subject.Name, "system:serviceaccounts:")
			}
			if from != "" && from != ns.Name {
				edges = append(edges, edge{From: from, To: ns.Name, Binding: g.BindingNamespace + "/" + g.BindingName, Subject: g.UserName()})
			}
		}
	}
	sort.Strings(names)
	return names, edges, nil
}

type graphPage struct {
	Edges []edge
}

func (s *Server) graph(w http.ResponseWriter, r *http.Request) {
	_, edges, err := s.grants(r.Context())
	if err != nil {
		s.fail(w, r, "reading role bindings", err)
		return
	}
	s.render(w, r, "graph.html", page{Title: "Who can pull from whom", Crumbs: []crumb{{"Projects", "/projects"}}, Content: graphPage{Edges: edges}})
}

// graphSVG draws the projects on a circle, an arrow from each project whose service
// accounts may pull to the project they may pull from. Projects with a grant are
// drawn; the others are left out so that 50 projects stay readable.
func (s *Server) graphSVG(w http.ResponseWriter, r *http.Request) {
	_, edges, err := s.grants(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	_, _ = w.Write(drawGraph(edges))
}

func drawGraph(edges []edge) []byte {
	seen := map[string]bool{}
	var nodes []string
	for _, e := range edges {
		for _, n := range []string{e.From, e.To} {
			if !seen[n] {
				seen[n] = true
				nodes = append(nodes, n)
			}
		}
	}
	sort.Strings(nodes)
	radius := math.Max(160, float64(len(nodes))*16)
	margin := 180.0
	size := 2 * (radius + margin)
	pos := map[string][2]float64{}
	for i, n := range nodes {
		a := 2 * math.Pi * float64(i) / float64(len(nodes))
		pos[n] = [2]float64{size/2 + radius*math.Cos(a), size/2 + radius*math.Sin(a)}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-family="sans-serif" font-size="13">`, size, size, size, size)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f5fa8"/></marker></defs>`)
	if len(nodes) == 0 {
		fmt.Fprintf(&b, `<text x="20" y="40">No project's service accounts may pull from another project.</text>`)
	}
	for _, e := range edges {
		f, t := pos[e.From], pos[e.To]
		dx, dy := t[0]-f[0], t[1]-f[1]
		l := math.Hypot(dx, dy)
		if l == 0 {
			continue
		}
		// Stop short of the circles.
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#1f5fa8" stroke-width="1.5" marker-end="url(#arrow)"><title>%s may pull from %s (%s)</title></line>`,
			f[0]+dx*9/l, f[1]+dy*9/l, t[0]-dx*11/l, t[1]-dy*11/l, html.EscapeString(e.Subject), html.EscapeString(e.To), html.EscapeString(e.Binding))
	}
	for _, n := range nodes {
		p := pos[n]
		anchor := "start"
		lx := p[0] + 14
		if p[0] < size/2-1 {
			anchor, lx = "end", p[0]-14
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="8" fill="#fff" stroke="#333" stroke-width="2"/><text x="%.1f" y="%.1f" text-anchor="%s">%s</text>`,
			p[0], p[1], lx, p[1]+4, anchor, html.EscapeString(n))
	}
	b.WriteString(`</svg>`)
	return []byte(b.String())
}
