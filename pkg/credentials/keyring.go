package credentials

import (
	"fmt"
	"sort"
	"strconv"
)

// Match is one credential that applies to an image, with the reason why.
type Match struct {
	Entry
	// NormalizedKey is the key in the kubelet's form, host[:port][/path].
	NormalizedKey string
	// Layer is the name of the layer the source was added to (e.g. "pod secrets").
	Layer string
	// Rank is the position in the order of trial, from 0.
	Rank int
}

// Why explains the match in one line, without the credential.
func (m Match) Why() string {
	what := m.Credential.String()
	if m.Helper != "" {
		what = "docker-credential-" + m.Helper
	}
	return fmt.Sprintf("#%d %s: key %q (%s) from %s, %s", m.Rank+1, m.Layer, m.Key, m.NormalizedKey, m.Source, what)
}

// Keyring answers which credentials apply to an image. Layers are consulted in the
// order they were added; within a layer, keys are ordered as the kubelet orders them.
// A Keyring is safe for concurrent lookups once built.
type Keyring struct {
	layers []*layer
}

// layer is one of the kubelet's keyrings: unique normalised keys, each with every
// credential added under it, indexed by host so that a lookup does not scan them all.
type layer struct {
	name   string
	byHost map[string][]*node // exact host[:port] → nodes, key descending
	globs  map[string][]*node // label count and port → glob nodes, key descending
	nodes  map[string]*node
	store  []Entry // credsStore helpers: consulted after every key of the layer
}

type node struct {
	key     string
	loc     location
	entries []Entry
}

// AddLayer adds a layer made of configs, in order, and returns the errors of keys
// that are not registry addresses (those keys are skipped, as the kubelet does).
func (k *Keyring) AddLayer(name string, configs ...*Config) []error {
	l := &layer{name: name, byHost: map[string][]*node{}, globs: map[string][]*node{}, nodes: map[string]*node{}}
	var errs []error
	for _, cfg := range configs {
		if cfg == nil {
			continue
		}
		for _, e := range cfg.Entries {
			loc, err := parseKey(e.Key)
			if err != nil {
				errs = append(errs, keyError(e.Source, e.Key, err))
				continue
			}
			key := loc.host + loc.path
			n := l.nodes[key]
			if n == nil {
				n = &node{key: key, loc: loc}
				l.nodes[key] = n
				if isGlob(loc.host) {
					gk := globKey(len(loc.labels), loc.port)
					l.globs[gk] = append(l.globs[gk], n)
				} else {
					l.byHost[loc.host] = append(l.byHost[loc.host], n)
				}
			}
			n.entries = append(n.entries, e)
		}
		if cfg.CredsStore != "" {
			l.store = append(l.store, Entry{Key: "*", Source: cfg.Source, Helper: cfg.CredsStore})
		}
	}
	for _, bucket := range l.byHost {
		sortDescending(bucket)
	}
	for _, bucket := range l.globs {
		sortDescending(bucket)
	}
	k.layers = append(k.layers, l)
	return errs
}

func globKey(labels int, port string) string { return strconv.Itoa(labels) + ":" + port }

func sortDescending(nodes []*node) {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].key > nodes[j].key })
}

// Lookup returns every credential that applies to image, in the order to try them.
func (k *Keyring) Lookup(image string) ([]Match, error) {
	loc, err := parseImage(image)
	if err != nil {
		return nil, err
	}
	var out []Match
	for _, l := range k.layers {
		out = l.lookup(loc, out)
	}
	return out, nil
}

func (l *layer) lookup(img location, out []Match) []Match {
	exact := l.byHost[img.host]
	globs := l.globs[globKey(len(img.labels), img.port)]
	// Merge the two descending lists, keeping the kubelet's single reverse order.
	i, j := 0, 0
	for i < len(exact) || j < len(globs) {
		var n *node
		if j >= len(globs) || (i < len(exact) && exact[i].key > globs[j].key) {
			n, i = exact[i], i+1
		} else {
			n, j = globs[j], j+1
		}
		if !n.loc.matches(img) {
			continue
		}
		for _, e := range n.entries {
			out = append(out, Match{Entry: e, NormalizedKey: n.key, Layer: l.name, Rank: len(out)})
		}
	}
	for _, e := range l.store {
		out = append(out, Match{Entry: e, NormalizedKey: img.host, Layer: l.name, Rank: len(out)})
	}
	return out
}

// Len is the number of credentials in the keyring.
func (k *Keyring) Len() int {
	total := 0
	for _, l := range k.layers {
		for _, n := range l.nodes {
			total += len(n.entries)
		}
		total += len(l.store)
	}
	return total
}
