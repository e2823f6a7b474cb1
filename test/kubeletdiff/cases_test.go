package kubeletdiff

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"pullgate.dev/pullgate/pkg/credentials"
)

func auth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

func auths(entries ...string) string {
	return `{"auths":{` + strings.Join(entries, ",") + `}}`
}

func entry(key, user string) string {
	return fmt.Sprintf(`%q:{"auth":%q}`, key, auth(user, "pw-"+user))
}

// Every rule, by hand: ordering, globs, ports, paths, IPv6, /v1/ and /v2/, Docker Hub,
// several secrets, and each row of the divergences the audit found.
func TestHandWrittenCases(t *testing.T) {
	cfgJSON := corev1.SecretTypeDockerConfigJson
	images := []string{
		"nginx", "library/nginx:1", "docker.io/library/nginx", "index.docker.io/library/nginx", "registry-1.docker.io/x/y",
		"myorg/app", "localhost/team/app", "localhost:5000/team/app", "quay.io/repo/app", "quay.io/repository-main/app",
		"quay.io/repository/app", "quay.io:443/repo/app", "a.quay.io/x", "[::1]:5000/a/b", "127.0.0.1:5000/ns/app@sha256:" + strings.Repeat("a", 64),
		"registry.example.com/a%2Fb/c", "Upper/Case", "quay.io/a/b", "reg1.example.com:5000/x",
	}
	secretSets := map[string][]corev1.Secret{
		"seed quay.io and repository-main": {secret("s", cfgJSON, auths(entry("quay.io", "host"), entry("quay.io/repository-main", "main")))},
		"two secrets, one key":             {secret("a", cfgJSON, auths(entry("quay.io", "a"))), secret("b", cfgJSON, auths(entry("quay.io", "b"), entry("quay.io/repo", "b-repo")))},
		"globs":                            {secret("g", cfgJSON, auths(entry("*.quay.io", "star"), entry("*.*", "two"), entry("*.io", "io"), entry("*.docker.io", "hub-star"), entry("reg*.example.com:5000", "reg")))},
		"ports":                            {secret("p", cfgJSON, auths(entry("quay.io:443", "443"), entry("quay.io", "none"), entry("quay.io:", "empty-port"), entry("localhost:5000", "local")))},
		"docker hub keys": {secret("h", cfgJSON, auths(entry("https://index.docker.io/v1/", "index"), entry("docker.io/library", "library"))),
			secret("i", cfgJSON, auths(entry("docker.io", "docker"), entry("registry-1.docker.io", "r1")))},
		"docker hub fallback only":            {secret("h", cfgJSON, auths(entry("index.docker.io", "index")))},
		"v1 and v2 paths":                     {secret("v", cfgJSON, auths(entry("https://quay.io/v2/repo", "v2"), entry("quay.io/v1/", "v1"), entry("https://quay.io/repo/v2/", "tail")))},
		"ipv6":                                {secret("6", cfgJSON, auths(entry("[::1]:5000", "v6"), entry("[::1]", "v6-noport")))},
		"percent escapes":                     {secret("e", cfgJSON, auths(entry("registry.example.com/a%252Fb", "twice"), entry("registry.example.com/a%2Fb", "once")))},
		"row 1: identity and registry tokens": {secret("t", cfgJSON, `{"auths":{"quay.io":{"identitytoken":"it","registrytoken":"rt","username":"u","password":"p"}}}`)},
		"row 2: legacy layout in a dockerconfigjson": {secret("l", cfgJSON, `{"quay.io":{"auth":"`+auth("u", "p")+`"}}`)},
		"row 3: one broken secret beside a good one": {secret("bad", cfgJSON, `{"auths":{"quay.io":{"auth":"%%%"}}}`), secret("good", cfgJSON, auths(entry("quay.io", "good")))},
		"row 4: a null entry":                        {secret("n", cfgJSON, `{"auths":{"quay.io/repo":null,"quay.io":{"auth":"`+auth("u", "p")+`"}}}`)},
		"row 5: auths in other letter cases":         {secret("c", cfgJSON, `{"Auths":{"quay.io":{"auth":"`+auth("cap", "p")+`"}},"auths":{"a.quay.io":{"auth":"`+auth("low", "p")+`"}}}`)},
		"row 5: AUTHS":                               {secret("c", cfgJSON, `{"AUTHS":{"quay.io":{"auth":"`+auth("upper", "p")+`"}}}`)},
		"row 6: odd helper fields":                   {secret("h", cfgJSON, `{"auths":{"quay.io":{"auth":"`+auth("u", "p")+`"}},"credsStore":5,"credHelpers":null}`)},
		"row 7: HttpHeaders of the wrong type":       {secret("x", cfgJSON, `{"auths":{"quay.io":{"auth":"`+auth("u", "p")+`"}},"HttpHeaders":{"a":1}}`)},
		"row 8: a key with spaces":                   {secret("w", cfgJSON, `{"auths":{" quay.io":{"auth":"`+auth("space", "p")+`"},"quay.io":{"auth":"`+auth("u", "p")+`"}}}`)},
		"row 10: escapes decoded twice":              {secret("e", cfgJSON, auths(entry("quay.io/rep%256f", "twice")))},
		"row 11: auth with spaces":                   {secret("s", cfgJSON, `{"auths":{"quay.io":{"auth":" dTpwYQ== "}}}`)},
		"row 11: wrong padding":                      {secret("p", cfgJSON, `{"auths":{"quay.io":{"auth":"dTpwYQ="}}}`)},
		"row 11: too much padding":                   {secret("p", cfgJSON, `{"auths":{"quay.io":{"auth":"dTpwYQ==="}}}`)},
		"unpadded auth":                              {secret("u", cfgJSON, `{"auths":{"quay.io":{"auth":"dTpwYQ"}}}`)},
		"row 12: placeholders beside a store":        {secret("s", cfgJSON, `{"auths":{"quay.io":{},"ghcr.io":{"auth":"`+auth("g", "p")+`"}},"credsStore":"desktop"}`)},
		"dockercfg secret":                           {secret("d", corev1.SecretTypeDockercfg, `{"quay.io":{"auth":"`+auth("old", "p")+`","email":"e"},"https://index.docker.io/v1/":{"username":"hub","password":"p"}}`)},
		"dockercfg holding the auths form":           {secret("d", corev1.SecretTypeDockercfg, auths(entry("quay.io", "inner")))},
		"podman secret":                              {secret("pm", credentials.SecretTypePodmanConfigJSON, auths(entry("quay.io", "podman"))), secret("dk", cfgJSON, auths(entry("quay.io", "docker")))},
		"opaque secret":                              {secret("o", corev1.SecretTypeOpaque, auths(entry("quay.io", "opaque")))},
		"empty data":                                 {secret("z", cfgJSON, ""), secret("nul", cfgJSON, "null")},
		"wrong field types":                          {secret("f", cfgJSON, `{"auths":{"quay.io":{"username":5}}}`)},
		"the same key twice":                         {secret("d", cfgJSON, `{"auths":{"quay.io":{"auth":"`+auth("first", "p")+`"},"quay.io":{"auth":"`+auth("last", "p")+`"}}}`)},
	}
	nodes := map[string][]byte{
		"no node file":     nil,
		"node file":        []byte(auths(entry("quay.io", "node"), entry("index.docker.io", "node-hub"))),
		"row 13: no auths": []byte(`{"quay.io":{"auth":"` + auth("legacy", "p") + `"}}`),
	}
	for setName, secrets := range secretSets {
		for nodeName, node := range nodes {
			for _, image := range images {
				sc := scenario{Secrets: secrets, Node: node, Image: image}
				if d := divergence(sc); d != "" {
					t.Errorf("%s, %s, %s: %s\n%s", setName, nodeName, image, d, sc)
				}
			}
		}
	}
}

// Generated cases: keys, entries, secrets and images drawn from pools that cover
// every rule, in many combinations, with a fixed seed.
func TestGeneratedCases(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 11))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	failures := 0
	for i := range n {
		sc := generate(r)
		if d := divergence(sc); d != "" {
			failures++
			if failures <= 10 {
				t.Errorf("case %d: %s\n%s", i, d, sc)
			}
		}
	}
	if failures > 10 {
		t.Errorf("… %d divergent cases in all", failures)
	}
}

var (
	hostPool  = []string{"quay.io", "quay.io:443", "quay.io:", "a.quay.io", "*.quay.io", "*.io", "*.*", "docker.io", "index.docker.io", "registry-1.docker.io", "*.docker.io", "localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "reg?.example.com", "[ab].example.com", "registry.example.com"}
	pathPool  = []string{"", "/", "/repo", "/repository-main", "/rep", "/v1/", "/v2/", "/v2/repo", "/library", "/team/app", "/a%2Fb", "/a%252Fb"}
	imagePool = []string{"nginx", "library/nginx:1.0", "myorg/app", "docker.io/library/nginx", "index.docker.io/x/y", "registry-1.docker.io/x/y",
		"quay.io/repo/app", "quay.io/repository-main/app:v1", "quay.io/rep/x", "quay.io:443/repo/a", "a.quay.io/x", "b.quay.io/y",
		"localhost/team/app", "localhost:5000/team/app", "127.0.0.1:5000/ns/app", "[::1]:5000/a/b", "reg1.example.com/x",
		"a.example.com/x", "registry.example.com/a%2Fb/c", "registry.example.com/team/app", "UPPER/case", "quay.io/repo/app@sha256:" + strings.Repeat("b", 64)}
	valuePool = []string{`{"auth":"%s"}`, `{"username":"%s","password":"p"}`, `{}`, `null`, `{"auth":"%s","identitytoken":"it"}`, `{"auth":"!!"}`, `{"username":5}`}
)

func generate(r *rand.Rand) scenario {
	var sc scenario
	for i := range r.IntN(4) {
		name := fmt.Sprintf("s%d", i)
		var parts []string
		used := map[string]bool{}
		for j := range 1 + r.IntN(4) {
			key := hostPool[r.IntN(len(hostPool))] + pathPool[r.IntN(len(pathPool))]
			if r.IntN(3) == 0 {
				key = "https://" + key
			}
			if n, err := credentials.NormalizeKey(key); err == nil && used[n] {
				continue // a second key the kubelet keeps as the same: its order is a map's
			} else if err == nil {
				used[n] = true
			}
			value := valuePool[r.IntN(len(valuePool))]
			if strings.Contains(value, "%s") {
				user := fmt.Sprintf("%s-%d", name, j)
				if strings.Contains(value, "auth") {
					value = fmt.Sprintf(value, auth(user, "p"))
				} else {
					value = fmt.Sprintf(value, user)
				}
			}
			parts = append(parts, fmt.Sprintf("%q:%s", key, value))
		}
		body := "{" + strings.Join(parts, ",") + "}"
		switch r.IntN(6) {
		case 0:
			sc.Secrets = append(sc.Secrets, secret(name, corev1.SecretTypeDockercfg, body))
		case 1:
			sc.Secrets = append(sc.Secrets, secret(name, credentials.SecretTypePodmanConfigJSON, `{"auths":`+body+`}`))
		default:
			sc.Secrets = append(sc.Secrets, secret(name, corev1.SecretTypeDockerConfigJson, `{"auths":`+body+`}`))
		}
	}
	if r.IntN(2) == 0 {
		sc.Node = []byte(auths(entry(hostPool[r.IntN(len(hostPool))], "node")))
	}
	sc.Image = imagePool[r.IntN(len(imagePool))]
	return sc
}

// FuzzKubeletDifferential feeds arbitrary secret content, keys and images to both.
func FuzzKubeletDifferential(f *testing.F) {
	f.Add(auths(entry("quay.io", "u")), "quay.io/repo/app", auths(entry("index.docker.io", "n")))
	f.Add(`{"Auths":{"*.io:":null}}`, "nginx", "")
	f.Add(`{"auths":{"[::1]":{"auth":"dTpw"}}}`, "[::1]:5000/x", `{"auths":{}}`)
	f.Fuzz(func(t *testing.T, secretData, image, node string) {
		sc := scenario{Secrets: []corev1.Secret{secret("s", corev1.SecretTypeDockerConfigJson, secretData)}, Image: image}
		if node != "" {
			sc.Node = []byte(node)
		}
		if d := divergence(sc); d != "" {
			t.Fatalf("%s\n%s", d, sc)
		}
	})
}
