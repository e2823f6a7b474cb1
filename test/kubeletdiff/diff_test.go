// Package kubeletdiff holds pkg/credentials to the kubelet's own code: the same pod
// secrets, node credentials and images go to the kubelet's keyring
// (k8s.io/kubernetes pkg/credentialprovider, its secrets package and
// parsers.ParseImageName) and to pullgate's, and any divergence that is not one of
// pkg/credentials' listed deliberate differences fails the test.
package kubeletdiff

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"

	"pullgate.dev/pullgate/pkg/credentials"
)

// scenario is one lookup: a pod's image pull secrets, the node's config.json (nil:
// none), and the image.
type scenario struct {
	Secrets []corev1.Secret
	Node    []byte
	Image   string
}

func (s scenario) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %q\n", s.Image)
	for _, sec := range s.Secrets {
		for k, v := range sec.Data {
			fmt.Fprintf(&b, "  secret %s (%s) %s: %s\n", sec.Name, sec.Type, k, v)
		}
	}
	if s.Node != nil {
		fmt.Fprintf(&b, "  node config.json: %s\n", s.Node)
	}
	return b.String()
}

// cred is one credential a lookup returned, in order: where from, and what.
type cred struct {
	Source, Username, Password string
}

// outcome is what one side concluded.
type outcome struct {
	ImageErr bool
	// Err is the kubelet's refusal of the pod's secrets (every pull fails).
	Err   error
	Creds []cred
	// Broken are the secrets pullgate skipped, by name, with why.
	Broken map[string]error
}

func secretSource(s corev1.Secret) string { return "secret " + s.Namespace + "/" + s.Name }

// kubelet looks image up as the kubelet 1.37 does: pod secrets
// (secrets.MakeDockerKeyring) in front of the node's keyring, for the repository
// parsers.ParseImageName makes of the image.
func kubelet(s scenario) outcome {
	repo, _, _, err := parsers.ParseImageName(s.Image)
	if err != nil {
		return outcome{ImageErr: true}
	}
	node := &credentialprovider.BasicDockerKeyring{}
	if s.Node != nil {
		var cfg credentialprovider.DockerConfigJSON
		if json.Unmarshal(s.Node, &cfg) == nil {
			node.Add(nil, cfg.Auths)
		}
	}
	keyring, err := secrets.MakeDockerKeyring(s.Secrets, node)
	if err != nil {
		return outcome{Err: err}
	}
	found, _ := keyring.Lookup(repo)
	var out []cred
	for _, c := range found {
		src := "node"
		if c.Source != nil && c.Source.Secret != nil {
			src = "secret " + c.Source.Secret.Namespace + "/" + c.Source.Secret.Name
		}
		out = append(out, cred{Source: src, Username: c.Username, Password: c.Password})
	}
	return outcome{Creds: out}
}

// pullgate looks image up with pkg/credentials as the node agent does: each secret
// read with FromSecret (a broken one skipped), all of them one layer, the node's file
// the next.
func pullgate(s scenario) outcome {
	var configs []*credentials.Config
	broken := map[string]error{}
	for i := range s.Secrets {
		cfg, err := credentials.FromSecret(&s.Secrets[i])
		if err != nil {
			broken[s.Secrets[i].Name] = err
			continue
		}
		configs = append(configs, cfg)
	}
	var kr credentials.Keyring
	kr.AddLayer("pod secrets", configs...)
	if s.Node != nil {
		if cfg, err := credentials.ParseNodeConfig(s.Node, credentials.Source{Kind: "file", Name: "config.json"}); err == nil {
			kr.AddLayer("node", cfg)
		}
	}
	matches, err := kr.Lookup(s.Image)
	if err != nil {
		return outcome{ImageErr: true, Broken: broken}
	}
	var out []cred
	for _, m := range matches {
		src := "node"
		if m.Source.Kind == "secret" {
			src = "secret " + m.Source.Name
		}
		if m.IdentityToken != "" || m.RegistryToken != "" {
			// The kubelet has no such fields: pullgate must drop them too.
			src += " (with a token)"
		}
		out = append(out, cred{Source: src, Username: m.Username, Password: m.Password})
	}
	return outcome{Creds: out, Broken: broken}
}

// allowedDifferences are the deliberate differences divergence allows, each where
// it allows it.
var allowedDifferences = []string{
	credentials.DifferenceBrokenSecret, credentials.DifferenceIgnoredSecret, credentials.DifferenceDuplicateKey,
	credentials.DifferencePodmanSecret, credentials.DifferenceCredentialHelpers, credentials.DifferenceLocalhostIsNotDockerHub,
}

// divergence compares the two sides, allowing only pkg/credentials' deliberate
// differences; "" when they agree. (DifferenceCredentialHelpers: the node files here
// name no helpers, so nothing is run.)
func divergence(s scenario) string {
	if repo, _, _, err := parsers.ParseImageName(s.Image); err == nil && strings.HasPrefix(repo, "localhost/") {
		// credentials.DifferenceLocalhostIsNotDockerHub: the kubelet would send a
		// Docker Hub credential to a registry on localhost.
		s = withoutDockerHubKeys(s)
	}
	k, p := kubelet(s), pullgate(s)
	if k.ImageErr || p.ImageErr {
		if k.ImageErr != p.ImageErr {
			return fmt.Sprintf("image %q: kubelet refuses it: %v, pullgate refuses it: %v", s.Image, k.ImageErr, p.ImageErr)
		}
		return ""
	}
	// Deliberate: a secret pullgate cannot use is skipped, and said so, where the
	// kubelet fails every pull of the pod (or, for a duplicate key, silently keeps the
	// last). Each skipped secret must be one the kubelet refuses on its own, or one
	// of the other deliberate differences.
	var kept []corev1.Secret
	for _, sec := range s.Secrets {
		err, skipped := p.Broken[sec.Name]
		if !skipped {
			kept = append(kept, sec)
			continue
		}
		alone := kubelet(scenario{Secrets: []corev1.Secret{asDockerConfigJSON(sec)}, Image: s.Image})
		switch {
		case alone.Err != nil: // credentials.DifferenceBrokenSecret
		case errors.Is(err, credentials.ErrDuplicateKey): // credentials.DifferenceDuplicateKey
		case errors.Is(err, credentials.ErrWrongType): // credentials.DifferenceIgnoredSecret
		default:
			return fmt.Sprintf("pullgate skipped secret %s (%v), which the kubelet uses", sec.Name, err)
		}
	}
	if k.Err != nil && len(p.Broken) == 0 {
		return fmt.Sprintf("the kubelet refuses the pod's secrets (%v), pullgate skips none", k.Err)
	}
	// credentials.DifferencePodmanSecret: the kubelet ignores podmanconfigjson secrets.
	want := kubelet(scenario{Secrets: kept, Node: s.Node, Image: s.Image}).Creds
	got := slices.DeleteFunc(slices.Clone(p.Creds), func(c cred) bool {
		return isPodman(s.Secrets, c.Source)
	})
	if collidingKeys(s.Secrets) {
		want, got = canonical(want), canonical(got)
	}
	if !slices.Equal(want, got) {
		return fmt.Sprintf("credentials differ:\n  kubelet:  %v\n  pullgate: %v", want, got)
	}
	return ""
}

// collidingKeys reports whether one secret holds two keys the kubelet keeps as one:
// their credentials then come in the order of a Go map's iteration in the kubelet.
func collidingKeys(secrets []corev1.Secret) bool {
	for _, sec := range secrets {
		for _, data := range sec.Data {
			var doc map[string]json.RawMessage
			if json.Unmarshal(data, &doc) != nil {
				continue
			}
			for field, raw := range doc {
				if strings.EqualFold(field, "auths") {
					_ = json.Unmarshal(raw, &doc)
				}
			}
			seen := map[string]bool{}
			for key := range doc {
				n, err := credentials.NormalizeKey(key)
				if err == nil && seen[n] {
					return true
				}
				seen[n] = true
			}
		}
	}
	return false
}

// withoutDockerHubKeys is s without the entries the kubelet keeps under
// index.docker.io, the key of its Docker Hub fallback, where it can read them.
func withoutDockerHubKeys(s scenario) scenario {
	drop := func(cfg credentialprovider.DockerConfig) {
		for key := range cfg {
			if n, err := credentials.NormalizeKey(key); err == nil && n == "index.docker.io" {
				delete(cfg, key)
			}
		}
	}
	out := scenario{Image: s.Image, Node: s.Node}
	if s.Node != nil {
		var cfg credentialprovider.DockerConfigJSON
		if json.Unmarshal(s.Node, &cfg) == nil {
			drop(cfg.Auths)
			out.Node, _ = json.Marshal(cfg)
		}
	}
	for _, sec := range s.Secrets {
		sec = *sec.DeepCopy()
		for key, data := range sec.Data {
			switch sec.Type {
			case corev1.SecretTypeDockerConfigJson:
				var cfg credentialprovider.DockerConfigJSON
				if json.Unmarshal(data, &cfg) == nil {
					drop(cfg.Auths)
					sec.Data[key], _ = json.Marshal(cfg)
				}
			case corev1.SecretTypeDockercfg:
				var cfg credentialprovider.DockerConfig
				if json.Unmarshal(data, &cfg) == nil {
					drop(cfg)
					sec.Data[key], _ = json.Marshal(cfg)
				}
			}
		}
		out.Secrets = append(out.Secrets, sec)
	}
	return out
}

// asDockerConfigJSON is a podmanconfigjson secret as the kubelet would read it if it
// read that type: pullgate reads it by the same rules.
func asDockerConfigJSON(sec corev1.Secret) corev1.Secret {
	if sec.Type != credentials.SecretTypePodmanConfigJSON {
		return sec
	}
	out := *sec.DeepCopy()
	out.Type = corev1.SecretTypeDockerConfigJson
	out.Data = map[string][]byte{corev1.DockerConfigJsonKey: sec.Data["auth.json"]}
	return out
}

func isPodman(secrets []corev1.Secret, source string) bool {
	for _, s := range secrets {
		if secretSource(s) == source && s.Type == credentials.SecretTypePodmanConfigJSON {
			return true
		}
	}
	return false
}

// canonical orders a run of credentials of one source under one key as the kubelet
// leaves it unordered (it ranges over a map): credentials of the same source that
// follow one another are sorted.
func canonical(cs []cred) []cred {
	out := slices.Clone(cs)
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && out[j].Source == out[i].Source {
			j++
		}
		slices.SortFunc(out[i:j], func(a, b cred) int {
			return strings.Compare(a.Username+"\x00"+a.Password, b.Username+"\x00"+b.Password)
		})
		i = j
	}
	return out
}

func secret(name string, typ corev1.SecretType, data string) corev1.Secret {
	key := corev1.DockerConfigJsonKey
	switch typ {
	case corev1.SecretTypeDockercfg:
		key = corev1.DockerConfigKey
	case credentials.SecretTypePodmanConfigJSON:
		key = "auth.json"
	}
	return corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Type:       typ,
		Data:       map[string][]byte{key: []byte(data)},
	}
}
