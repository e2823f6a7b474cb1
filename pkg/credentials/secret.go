package credentials

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// SecretTypePodmanConfigJSON is the type the seed's
// `oc create secret generic NAME --from-file=auth.json --type=kubernetes.io/podmanconfigjson`
// gives a Secret; its one data key is the file's base name.
const SecretTypePodmanConfigJSON corev1.SecretType = "kubernetes.io/podmanconfigjson"

// FromSecret reads the registry credentials of a Secret:
//   - kubernetes.io/dockerconfigjson: key .dockerconfigjson, the "auths" form;
//   - kubernetes.io/dockercfg: key .dockercfg, the legacy form;
//   - kubernetes.io/podmanconfigjson: the one data key (a file's base name,
//     auth.json by default), the "auths" form. The kubelet ignores this type.
//
// An Opaque secret that holds a docker config is not used, as by the kubelet; the
// returned error says how to fix it. Any other type is ErrWrongType. Credential
// helpers named in a Secret are never run.
func FromSecret(secret *corev1.Secret) (*Config, error) {
	name := secret.Namespace + "/" + secret.Name
	src := Source{Kind: "secret", Name: name, UID: string(secret.UID)}
	if f, ok := secretFormats[secret.Type]; ok {
		src.DataKey = f.key
		data := secret.Data[f.key]
		if len(data) == 0 {
			// The kubelet passes over such a secret in silence; it is said here.
			return &Config{Source: src, Warnings: []string{fmt.Sprintf("%s holds nothing under %s: it gives no credentials", src, f.key)}}, nil
		}
		return f.parse(data, src)
	}
	switch secret.Type {
	case SecretTypePodmanConfigJSON:
		key, err := podmanDataKey(secret)
		if err != nil {
			return nil, keyError(src, "", err)
		}
		src.DataKey = key
		return ParseDockerConfigJSON(secret.Data[key], src)
	case corev1.SecretTypeOpaque, "":
		for _, key := range []string{corev1.DockerConfigJsonKey, corev1.DockerConfigKey} {
			if _, ok := secret.Data[key]; ok {
				return nil, keyError(src, "", fmt.Errorf("%w: it is type Opaque and holds %s, which the kubelet ignores; recreate it with type %s (pullgate create secret generic %s --from-file=%s=<file> --type=%s)",
					ErrWrongType, key, corev1.SecretTypeDockerConfigJson, secret.Name, corev1.DockerConfigJsonKey, corev1.SecretTypeDockerConfigJson))
			}
		}
	}
	return nil, keyError(src, "", fmt.Errorf("%w: type %q; want %s, %s or %s", ErrWrongType, secret.Type,
		corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg, SecretTypePodmanConfigJSON))
}

// secretFormats are the kubelet's two secret types: a fixed data key and its format.
var secretFormats = map[corev1.SecretType]struct {
	key   string
	parse func([]byte, Source) (*Config, error)
}{
	corev1.SecretTypeDockerConfigJson: {corev1.DockerConfigJsonKey, ParseDockerConfigJSON},
	corev1.SecretTypeDockercfg:        {corev1.DockerConfigKey, ParseDockercfg},
}

// podmanDataKey is the data key of a podmanconfigjson secret: its only key, else
// auth.json, else .dockerconfigjson.
func podmanDataKey(secret *corev1.Secret) (string, error) {
	if len(secret.Data) == 1 {
		for k := range secret.Data {
			return k, nil
		}
	}
	for _, k := range []string{"auth.json", corev1.DockerConfigJsonKey} {
		if _, ok := secret.Data[k]; ok {
			return k, nil
		}
	}
	if len(secret.Data) == 0 {
		return "", ErrMissingKey
	}
	keys := make([]string, 0, len(secret.Data))
	for k := range secret.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "", fmt.Errorf("%w: data keys %v, none of them auth.json; keep one key holding the auth.json", ErrMissingKey, keys)
}
