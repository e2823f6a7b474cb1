package credentials

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Consideration is one credential of a keyring weighed for an image: matched or not,
// and by which rule.
type Consideration struct {
	Entry
	// NormalizedKey is the key in the kubelet's form; Layer the keyring layer.
	NormalizedKey, Layer string
	Matched              bool
	// Rank is the position in the order of trial, from 0 (matched ones only).
	Rank int
	// Why is the rule that matched or failed, e.g. `path prefix "/repository-main" of
	// "/repository-main/app"` or `host "quay.io" is not "registry.redhat.io"`.
	Why string
}

// Consider weighs every credential of the keyring for image: those that match first,
// in the order a pull tries them, then the others, each with the rule that decided.
func (k *Keyring) Consider(image string) ([]Consideration, error) {
	img, hub, err := imageLocation(image)
	if err != nil {
		return nil, err
	}
	matches, err := k.Lookup(image)
	if err != nil {
		return nil, err
	}
	var out, missed []Consideration
	for _, m := range matches {
		c := Consideration{Entry: m.Entry, NormalizedKey: m.NormalizedKey, Layer: m.Layer, Matched: true, Rank: m.Rank}
		switch {
		case m.Helper != "" && m.Key == "*":
			c.Why = "the credsStore helper is asked for every registry"
		default:
			c.Why = why(m.NormalizedKey, img, hub)
		}
		out = append(out, c)
	}
	for _, l := range k.layers {
		var layerMissed []Consideration
		for key, n := range l.nodes {
			for _, e := range n.entries {
				if matched(matches, l.name, key, e) {
					continue
				}
				c := Consideration{Entry: e, NormalizedKey: key, Layer: l.name, Why: why(key, img, hub)}
				if strings.HasPrefix(c.Why, "Docker Hub alias") {
					c.Why += ", used only when no other key matches"
				}
				layerMissed = append(layerMissed, c)
			}
		}
		// Most specific (longest) key first, as the kubelet's reverse lexical order.
		slices.SortStableFunc(layerMissed, func(a, b Consideration) int { return strings.Compare(b.NormalizedKey, a.NormalizedKey) })
		missed = append(missed, layerMissed...)
	}
	return append(out, missed...), nil
}

func matched(matches []Match, layer, key string, e Entry) bool {
	for _, m := range matches {
		if m.Layer == layer && m.NormalizedKey == key && m.Source == e.Source && m.Key == e.Key && m.Credential == e.Credential {
			return true
		}
	}
	return false
}

// why is the rule by which key matches the image, or the first one it fails.
func why(key string, img location, hub bool) string {
	k, err := parseLocation(key)
	if err != nil {
		return "the key is not a registry address"
	}
	host, imgHost := strings.Join(k.labels, "."), strings.Join(img.labels, ".")
	if img.labels == nil {
		return "the image's registry cannot be read as a host"
	}
	if len(k.labels) != len(img.labels) {
		if hub && key == defaultRegistryHost {
			return "Docker Hub alias: the key index.docker.io stands for docker.io"
		}
		return fmt.Sprintf("host %q is not %q", host, imgHost)
	}
	glob := false
	for i, pattern := range k.labels {
		ok, err := filepath.Match(pattern, img.labels[i])
		if err != nil || !ok {
			if hub && key == defaultRegistryHost {
				return "Docker Hub alias: the key index.docker.io stands for docker.io"
			}
			return fmt.Sprintf("host %q is not %q", host, imgHost)
		}
		glob = glob || isGlob(pattern)
	}
	if k.port != img.port {
		return fmt.Sprintf("port %q is not the image's %q", k.port, img.port)
	}
	rule := fmt.Sprintf("host %q", host)
	if glob {
		rule = fmt.Sprintf("glob %q matches %q", host, imgHost)
	}
	if k.port != "" {
		rule += fmt.Sprintf(", port %s", k.port)
	}
	if !strings.HasPrefix(img.path, k.path) {
		return fmt.Sprintf("path %q is not a prefix of %q", k.path, img.path)
	}
	if k.path != "" {
		rule += fmt.Sprintf(", path prefix %q of %q", k.path, img.path)
	}
	return rule
}
