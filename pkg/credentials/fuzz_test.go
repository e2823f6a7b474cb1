package credentials

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{authsDoc, `{"quay.io":{"auth":"dTpw"}}`, `{"auths":{},"credsStore":"x","credHelpers":{"a":"b"}}`, `{"auths":{"a":{},"a":{}}}`, `[1,{"a":[{}]}]`, `{"auths":{"q":{"auth":1}}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte, Source) (*Config, error){ParseConfig, ParseDockercfg, ParseDockerConfigJSON} {
			cfg, err := parse(data, fileSrc)
			if err != nil {
				if !strings.Contains(err.Error(), fileSrc.Name) {
					t.Fatalf("error %q does not name the source", err)
				}
				continue
			}
			var kr Keyring
			kr.AddLayer("fuzz", cfg)
			if _, err := kr.Lookup("quay.io/a/b"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzFromSecret(f *testing.F) {
	f.Add(uint8(0), ".dockerconfigjson", []byte(authsDoc))
	f.Add(uint8(1), ".dockercfg", []byte(`{"quay.io":{}}`))
	f.Add(uint8(2), "auth.json", []byte(authsDoc))
	f.Add(uint8(3), ".dockerconfigjson", []byte(authsDoc))
	types := []corev1.SecretType{corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg, SecretTypePodmanConfigJSON, corev1.SecretTypeOpaque}
	f.Fuzz(func(t *testing.T, typ uint8, key string, data []byte) {
		s := secret(types[int(typ)%len(types)], map[string]string{key: string(data)})
		if _, err := FromSecret(s); err != nil && !strings.Contains(err.Error(), "project-a/pull") {
			t.Fatalf("error %q does not name the secret", err)
		}
	})
}

func FuzzLookup(f *testing.F) {
	f.Add("quay.io/repository-main", "quay.io/repository-main/app:1")
	f.Add("*.example.com:5000", "a.example.com:5000/x@sha256:0000000000000000000000000000000000000000000000000000000000000000")
	f.Add("https://index.docker.io/v1/", "ubuntu")
	f.Fuzz(func(t *testing.T, key, image string) {
		kr := keyring(key, "u")
		matches, err := kr.Lookup(image)
		if err != nil {
			return
		}
		for i, m := range matches {
			if m.Rank != i || m.Key != key {
				t.Fatalf("match %d: %+v", i, m)
			}
		}
	})
}

func FuzzDecodeAuth(f *testing.F) {
	f.Add("dTpwYQ==")
	f.Add("dTpwYQ")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, auth string) {
		user, pass, err := DecodeAuth(auth)
		if err != nil {
			return
		}
		if u2, p2, err := DecodeAuth(EncodeAuth(user, pass)); err != nil || u2 != user || p2 != pass {
			t.Fatalf("round trip of %q:%q gave %q:%q %v", user, pass, u2, p2, err)
		}
	})
}

func FuzzSetAuth(f *testing.F) {
	f.Add([]byte(""), "quay.io", "u", "p")
	f.Add([]byte(`{"auths":{"quay.io":{}},"x":1}`), "quay.io/org", "u", "p:q")
	f.Fuzz(func(t *testing.T, existing []byte, key, user, pass string) {
		if strings.Contains(user, ":") || user == "" {
			return
		}
		out, err := SetAuth(existing, key, Credential{Username: user, Password: pass}, Docker)
		if err != nil {
			return
		}
		cfg, err := ParseConfig(out, fileSrc)
		if err != nil {
			t.Fatalf("SetAuth wrote a file it cannot read: %v\n%s", err, out)
		}
		for _, e := range cfg.Entries {
			if e.Key == key && e.Username == user && e.Password == pass {
				return
			}
		}
		t.Fatalf("entry %q not found in\n%s", key, out)
	})
}

// The index must return exactly what the kubelet's linear scan returns.
func FuzzIndexEqualsLinearScan(f *testing.F) {
	f.Add("quay.io,quay.io/repo,*.example.com,a.example.com,*.*.example.com,reg*.example.com:5000/x,docker.io", "quay.io/repository/app")
	f.Add("*.b.c,a.*.c,a.b.*,*.*.*", "a.b.c/x")
	f.Fuzz(func(t *testing.T, keys, image string) {
		var pairs []string
		for _, k := range strings.Split(keys, ",") {
			pairs = append(pairs, k, k)
		}
		kr := keyring(pairs...)
		got, err := kr.Lookup(image)
		if err != nil {
			return
		}
		img, hub, _ := imageLocation(image)
		var all []*node
		for _, n := range kr.layers[0].nodes {
			all = append(all, n)
		}
		slices.SortFunc(all, func(a, b *node) int { return strings.Compare(b.key, a.key) })
		var want []string
		for _, n := range all {
			if n.loc.matches(img) {
				for _, e := range n.entries {
					want = append(want, e.Key)
				}
			}
		}
		if n := kr.layers[0].nodes[defaultRegistryHost]; len(want) == 0 && hub && n != nil {
			for _, e := range n.entries {
				want = append(want, e.Key)
			}
		}
		var gotKeys []string
		for _, m := range got {
			gotKeys = append(gotKeys, m.Key)
		}
		if !slices.Equal(gotKeys, want) {
			t.Fatalf("index %q, linear scan %q", gotKeys, want)
		}
	})
}
