package credentials

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// users lists, in the order to try them, the usernames that apply to image.
func users(t *testing.T, kr *Keyring, image string) string {
	t.Helper()
	matches, err := kr.Lookup(image)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range matches {
		out = append(out, m.Username)
	}
	return strings.Join(out, ",")
}

// keyring builds one layer from key → username pairs, in order, in one file.
func keyring(pairs ...string) *Keyring {
	var entries []Entry
	src := Source{Kind: "file", Name: "test.json"}
	for i := 0; i < len(pairs); i += 2 {
		entries = append(entries, Entry{Key: pairs[i], Credential: Credential{Username: pairs[i+1], Password: "p"}, Source: src})
	}
	var kr Keyring
	kr.AddLayer("test", &Config{Source: src, Entries: entries})
	return &kr
}

func TestNormalizeKey(t *testing.T) {
	tests := map[string]string{
		"quay.io":                      "quay.io",
		"https://quay.io":              "quay.io",
		"http://quay.io":               "quay.io",
		"https://quay.io/":             "quay.io",
		"https://index.docker.io/v1/":  "index.docker.io",
		"registry-1.docker.io":         "registry-1.docker.io",
		"quay.io:":                     "quay.io:",
		"https://quay.io/a%2Fb":        "quay.io/a/b",
		"https://quay.io/v2/":          "quay.io",
		"quay.io/v2/org/repo":          "quay.io/org/repo",
		"https://quay.io/v1/org":       "quay.io/org",
		"quay.io/repository-main":      "quay.io/repository-main",
		"localhost:5000":               "localhost:5000",
		"https://127.0.0.1:5000/v2/":   "127.0.0.1:5000",
		"*.example.com":                "*.example.com",
		"docker.io:443":                "docker.io:443",
		"https://quay.io/org/repo/v2/": "quay.io/org/repo/v2/",
	}
	for in, want := range tests {
		got, err := NormalizeKey(in)
		if err != nil || got != want {
			t.Errorf("NormalizeKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{" quay.io", "quay.io ", "https://a b"} {
		if _, err := NormalizeKey(bad); err == nil {
			t.Errorf("key %q was accepted: the kubelet ignores it", bad)
		}
	}
}

// The seed's example: quay.io and quay.io/repository-main in one file.
func TestSeedQuayRepositoryMain(t *testing.T) {
	kr := keyring("cloud.openshift.com", "cloud", "quay.io", "quay-user", "quay.io/repository-main", "main-user")
	if got := users(t, kr, "quay.io/repository-main/app:1.0"); got != "main-user,quay-user" {
		t.Errorf("quay.io/repository-main/app: %s, want main-user then quay-user", got)
	}
	if got := users(t, kr, "quay.io/other/app"); got != "quay-user" {
		t.Errorf("quay.io/other/app: %s, want quay-user only", got)
	}
	if got := users(t, kr, "registry.example.com/app"); got != "" {
		t.Errorf("unrelated registry matched %s", got)
	}
}

func TestSchemeVariantsAreOneKeyAndBothKept(t *testing.T) {
	kr := keyring("https://quay.io", "with-scheme", "quay.io", "without")
	matches, err := kr.Lookup("quay.io/a/b")
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) != 2 || matches[0].Username != "with-scheme" || matches[1].Username != "without" {
		t.Fatalf("matches %+v", matches)
	}
	if matches[0].NormalizedKey != "quay.io" || matches[1].NormalizedKey != "quay.io" {
		t.Errorf("normalised keys %q %q", matches[0].NormalizedKey, matches[1].NormalizedKey)
	}
}

func TestPortsMustBeEqual(t *testing.T) {
	kr := keyring("registry.local:5000", "five", "registry.local", "none")
	if got := users(t, kr, "registry.local:5000/app"); got != "five" {
		t.Errorf(":5000 image got %s", got)
	}
	if got := users(t, kr, "registry.local/app"); got != "none" {
		t.Errorf("portless image got %s", got)
	}
	if got := users(t, kr, "registry.local:5001/app"); got != "" {
		t.Errorf(":5001 image got %s", got)
	}
}

func TestGlobsMatchPerDNSLabel(t *testing.T) {
	kr := keyring("*.example.com", "star", "a.example.com", "exact", "*.*.example.com", "two-stars", "reg*.example.com", "reg-prefix")
	tests := map[string]string{
		"a.example.com/app":    "exact,star",
		"b.example.com/app":    "star",
		"a.b.example.com/app":  "two-stars",
		"example.com/app":      "",
		"reg1.example.com/app": "reg-prefix,star",
	}
	for image, want := range tests {
		if got := users(t, kr, image); got != want {
			t.Errorf("%s: got %q, want %q", image, got, want)
		}
	}
}

// The kubelet compares paths as plain strings: quay.io/repo matches quay.io/repository.
func TestPathIsAPlainStringPrefix(t *testing.T) {
	kr := keyring("quay.io/repo", "repo")
	if got := users(t, kr, "quay.io/repository/app"); got != "repo" {
		t.Errorf("got %q: the kubelet's plain prefix would match", got)
	}
	if got := users(t, kr, "quay.io/rep/app"); got != "" {
		t.Errorf("got %q for a shorter path", got)
	}
}

// Docker Hub as the kubelet matches it: a key of docker.io matches its images
// directly; index.docker.io (docker login's https://index.docker.io/v1/) only when no
// key of the layer matched; registry-1.docker.io only images named with that host.
func TestDockerHubAsTheKubeletMatchesIt(t *testing.T) {
	hub := []string{"ubuntu", "library/ubuntu:22.04", "docker.io/library/ubuntu", "index.docker.io/library/ubuntu"}
	for key, want := range map[string][]string{
		"https://index.docker.io/v1/": hub,
		"index.docker.io":             hub,
		"docker.io":                   hub,
		"registry-1.docker.io":        {"registry-1.docker.io/org/app"},
	} {
		kr := keyring(key, "hub")
		for _, image := range append(hub, "registry-1.docker.io/org/app", "localhost/team/app") {
			if got := users(t, kr, image) == "hub"; got != slices.Contains(want, image) {
				t.Errorf("key %q, image %q: matched %v", key, image, got)
			}
		}
	}
	// The fallback is only a fallback: any other match of the layer wins alone.
	kr := keyring("docker.io/library", "library", "index.docker.io", "hub")
	if got := users(t, kr, "nginx"); got != "library" {
		t.Errorf("nginx: %s, want library alone", got)
	}
	if got := users(t, kr, "myorg/app"); got != "hub" {
		t.Errorf("myorg/app: %s, want hub", got)
	}
}

func TestMostSpecificFirstWithinALayerLayersInOrder(t *testing.T) {
	src := func(n string) Source { return Source{Kind: "secret", Name: n, DataKey: ".dockerconfigjson"} }
	cfg := func(name, key, user string) *Config {
		return &Config{Source: src(name), Entries: []Entry{{Key: key, Credential: Credential{Username: user}, Source: src(name)}}}
	}
	var kr Keyring
	kr.AddLayer("pod secrets", cfg("a/one", "quay.io", "pod-host"), cfg("a/two", "quay.io/org", "pod-org"))
	kr.AddLayer("service-account secrets", cfg("a/sa", "quay.io/org/app", "sa-app"))
	kr.AddLayer("cluster pull secret", cfg("pullgate-system/pull-secret", "quay.io", "cluster"))
	matches, err := kr.Lookup("quay.io/org/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range matches {
		got = append(got, fmt.Sprintf("%d:%s:%s", m.Rank, m.Layer, m.Username))
	}
	want := "0:pod secrets:pod-org,1:pod secrets:pod-host,2:service-account secrets:sa-app,3:cluster pull secret:cluster"
	if strings.Join(got, ",") != want {
		t.Errorf("order\n got %v\nwant %s", got, want)
	}
	why := matches[0].Why()
	for _, w := range []string{"#1", "pod secrets", `"quay.io/org"`, "secret a/two (key .dockerconfigjson)", `user "pod-org"`} {
		if !strings.Contains(why, w) {
			t.Errorf("Why() = %q, missing %q", why, w)
		}
	}
}

func TestBadKeysAreSkippedAndReported(t *testing.T) {
	var kr Keyring
	errs := kr.AddLayer("x", &Config{Source: fileSrc, Entries: []Entry{{Key: "https://user:hunter2@a b", Source: fileSrc}, {Key: "quay.io", Source: fileSrc}}})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), fileSrc.Name) || strings.Contains(errs[0].Error(), "hunter2") {
		t.Errorf("errors %v", errs)
	}
	if kr.Len() != 1 {
		t.Errorf("keyring holds %d credentials, want 1", kr.Len())
	}
}

func TestLookupRejectsInvalidImage(t *testing.T) {
	var kr Keyring
	if _, err := kr.Lookup("UPPER/Case"); err == nil || !strings.Contains(err.Error(), "UPPER/Case") {
		t.Errorf("got %v", err)
	}
}

// The seed's delegated authentication: registry.redhat.io sends clients to
// sso.redhat.com for tokens; the token host's own entry is found by host alone, and
// an entry with a path never applies to it.
func TestLookupHostForTokenService(t *testing.T) {
	kr := keyring("registry.redhat.io", "registry-user", "sso.redhat.com", "sso-user", "sso.redhat.com/auth", "path-user", "*.redhat.com", "glob-user")
	var got []string
	for _, m := range kr.LookupHost("sso.redhat.com") {
		got = append(got, m.Username)
	}
	if strings.Join(got, ",") != "sso-user,glob-user" {
		t.Errorf("sso.redhat.com: %v, want sso-user then glob-user", got)
	}
	if m := kr.LookupHost("sso.redhat.com:8443"); len(m) != 0 {
		t.Errorf("another port matched %v", m)
	}
}
