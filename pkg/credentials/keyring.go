package credentials

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	return fmt.Sprintf("#%d %s: key %q (%s) from %s, %s", m.Rank+1, m.Layer, redactKey(m.Key), redactKey(m.NormalizedKey), m.Source, what)
}

// Keyring answers which credentials apply to an image, as the kubelet's keyrings do.
// Each layer is one of the kubelet's keyrings — all of a pod's secrets together are
// one (secrets.MakeDockerKeyring), the node's credentials the next — and layers are
// consulted in the order they were added. Within a layer, keys are tried in reverse
// lexical order, and a Docker Hub image that no key matched falls back to the key
// index.docker.io. A Keyring is safe for concurrent lookups once built.
type Keyring struct {
	layers []*layer
}

// layer is one of the kubelet's keyrings: unique normalised keys, each with every
// credential added under it. Keys are indexed so that a lookup touches only the
// keys that can match: literal hosts by labels and port, then by path length; globs
// by label count, port and the literal labels at their right.
type layer struct {
	name  string
	hosts map[string]*pathIndex // literal labels:port
	globs map[string]*pathIndex // globKey(labels, port, literal suffix)
	nodes map[string]*node
	store []Entry // credsStore helpers: consulted after every key of the layer
}

type node struct {
	key     string // normalised, as the kubelet keeps it
	loc     location
	entries []Entry
}

// pathIndex holds the keys of one host by path, and the distinct path lengths, so
// the kubelet's plain string prefix is found with one map look-up per length.
type pathIndex struct {
	byPath  map[string][]*node // path → nodes (several for globs of one suffix)
	lengths []int              // ascending
}

func (p *pathIndex) add(n *node) {
	if p.byPath == nil {
		p.byPath = map[string][]*node{}
	}
	p.byPath[n.loc.path] = append(p.byPath[n.loc.path], n)
	if i, found := slices.BinarySearch(p.lengths, len(n.loc.path)); !found {
		p.lengths = slices.Insert(p.lengths, i, len(n.loc.path))
	}
}

func (p *pathIndex) candidates(path string, out []*node) []*node {
	if p == nil {
		return out
	}
	for _, l := range p.lengths {
		if l > len(path) {
			break
		}
		out = append(out, p.byPath[path[:l]]...)
	}
	return out
}

// AddLayer adds a layer made of configs, in order — give it all of one kind at once
// (every secret of a pod is one layer, as in the kubelet; a layer per secret would
// change the order) — and returns the errors of keys that are not registry
// addresses (those keys are skipped, as the kubelet does).
func (k *Keyring) AddLayer(name string, configs ...*Config) []error {
	l := &layer{name: name, hosts: map[string]*pathIndex{}, globs: map[string]*pathIndex{}, nodes: map[string]*node{}}
	var errs []error
	for _, cfg := range configs {
		if cfg == nil {
			continue
		}
		for _, e := range cfg.Entries {
			if err := l.add(e); err != nil {
				errs = append(errs, keyError(e.Source, redactKey(e.Key), err))
			}
		}
		if cfg.CredsStore != "" {
			l.store = append(l.store, Entry{Key: "*", Source: cfg.Source, Helper: cfg.CredsStore})
		}
	}
	k.layers = append(k.layers, l)
	return errs
}

func (l *layer) add(e Entry) error {
	key, err := NormalizeKey(e.Key)
	if err != nil {
		return err
	}
	n := l.nodes[key]
	if n == nil {
		loc, err := parseLocation(key)
		if err != nil {
			return err
		}
		n = &node{key: key, loc: loc}
		l.nodes[key] = n
		index, indexKey := l.hosts, loc.hostKey()
		if slices.ContainsFunc(loc.labels, isGlob) {
			index, indexKey = l.globs, globKey(len(loc.labels), loc.port, literalSuffix(loc.labels))
		}
		p, ok := index[indexKey]
		if !ok {
			p = &pathIndex{}
			index[indexKey] = p
		}
		p.add(n)
	}
	n.entries = append(n.entries, e)
	return nil
}

// literalSuffix is the labels right of the last label that holds a glob character.
func literalSuffix(labels []string) string {
	for i := len(labels) - 1; i >= 0; i-- {
		if isGlob(labels[i]) {
			return strings.Join(labels[i+1:], ".")
		}
	}
	return strings.Join(labels, ".")
}

func globKey(labels int, port, suffix string) string {
	return strconv.Itoa(labels) + ":" + port + ":" + suffix
}

// Lookup returns every credential that applies to image, in the order to try them.
func (k *Keyring) Lookup(image string) ([]Match, error) {
	loc, hub, err := imageLocation(image)
	if err != nil {
		return nil, err
	}
	var out []Match
	var scratch []*node
	for _, l := range k.layers {
		out, scratch = l.lookup(loc, hub, out, scratch[:0])
	}
	return out, nil
}

// LookupHost returns the credentials whose key is the host hostport with no path (or
// a glob over it), in the order to try them: those for a token service on its own
// host, such as the seed's sso.redhat.com.
func (k *Keyring) LookupHost(hostport string) []Match {
	loc, err := parseLocation(hostport)
	if err != nil {
		return nil
	}
	var out []Match
	var scratch []*node
	for _, l := range k.layers {
		out, scratch = l.lookup(loc, false, out, scratch[:0])
	}
	return out
}

// lookup is the kubelet's BasicDockerKeyring.Lookup over one layer.
func (l *layer) lookup(img location, hub bool, out []Match, cand []*node) ([]Match, []*node) {
	if img.labels != nil { // else an image no key can match (imageLocation)
		cand = l.hosts[img.hostKey()].candidates(img.path, cand)
	}
	if len(l.globs) > 0 && img.labels != nil {
		for i := 0; i <= len(img.labels); i++ {
			suffix := strings.Join(img.labels[i:], ".")
			cand = l.globs[globKey(len(img.labels), img.port, suffix)].candidates(img.path, cand)
		}
	}
	// The kubelet's order: keys in reverse lexical order.
	slices.SortFunc(cand, func(a, b *node) int { return strings.Compare(b.key, a.key) })
	before := len(out)
	for i, n := range cand {
		if i > 0 && cand[i-1] == n || !n.loc.matches(img) {
			continue
		}
		for _, e := range n.entries {
			out = append(out, Match{Entry: e, NormalizedKey: n.key, Layer: l.name, Rank: len(out)})
		}
	}
	if len(out) == before && hub {
		if n := l.nodes[defaultRegistryHost]; n != nil {
			for _, e := range n.entries {
				out = append(out, Match{Entry: e, NormalizedKey: n.key, Layer: l.name, Rank: len(out)})
			}
		}
	}
	for _, e := range l.store {
		out = append(out, Match{Entry: e, NormalizedKey: strings.Join(img.labels, "."), Layer: l.name, Rank: len(out)})
	}
	return out, cand
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
