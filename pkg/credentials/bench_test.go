package credentials

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A keyring of 10,000 credentials: hosts, hosts with ports and paths, many paths
// under one host, and globs, as a large cluster's pull secrets might hold. The goal
// is under 10 µs per image. The anchor, run beside it, is the kubelet's algorithm:
// every key, in reverse lexical order, tested against the image.
func BenchmarkLookup10000(b *testing.B) {
	src := Source{Kind: "file", Name: "bench"}
	var entries []Entry
	for i := range 10000 {
		var key string
		switch i % 4 {
		case 0:
			key = fmt.Sprintf("registry%d.example.com", i)
		case 1:
			key = fmt.Sprintf("registry%d.example.com:5000/team%d", i-1, i)
		case 2:
			key = fmt.Sprintf("https://quay.io/org%d", i)
		default:
			key = fmt.Sprintf("*.region%d.example.com", i)
		}
		entries = append(entries, Entry{Key: key, Credential: Credential{Username: "u"}, Source: src})
	}
	var kr Keyring
	kr.AddLayer("bench", &Config{Source: src, Entries: entries})
	images := []string{"quay.io/org5002/app:1", "registry4000.example.com/app", "a.region3.example.com/x/y", "docker.io/library/ubuntu"}

	b.Run("indexed", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := kr.Lookup(images[i%len(images)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("anchor=kubelet-linear-scan", func(b *testing.B) {
		l := kr.layers[0]
		all := make([]*node, 0, len(l.nodes))
		for _, n := range l.nodes {
			all = append(all, n)
		}
		slices.SortFunc(all, func(a, b *node) int { return strings.Compare(b.key, a.key) })
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			img, _, err := imageLocation(images[i%len(images)])
			if err != nil {
				b.Fatal(err)
			}
			var out []Match
			for _, n := range all {
				if n.loc.matches(img) {
					for _, e := range n.entries {
						out = append(out, Match{Entry: e, NormalizedKey: n.key, Rank: len(out)})
					}
				}
			}
		}
	})
}
