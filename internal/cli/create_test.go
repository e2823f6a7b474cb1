package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"pullgate.dev/pullgate/pkg/credentials"
)

// create secret generic --type=kubernetes.io/dockerconfigjson checks the file before
// a Secret is made: the key must be .dockerconfigjson, one file, with a credential.
func TestCreateSecretChecksCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "config.json")
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(good, []byte(`{"auths":{"quay.io":{"auth":"dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ     corev1.SecretType
		sources []string
		want    string
	}{
		{corev1.SecretTypeDockerConfigJson, []string{".dockerconfigjson=" + good}, ""},
		{credentials.SecretTypePodmanConfigJSON, []string{good}, ""},
		{corev1.SecretTypeOpaque, []string{empty}, ""},
		{corev1.SecretTypeDockerConfigJson, []string{good}, "under the key .dockerconfigjson"},
		{corev1.SecretTypeDockerConfigJson, []string{".dockerconfigjson=" + empty}, "no registry credentials"},
		{corev1.SecretTypeDockerConfigJson, []string{".dockerconfigjson=" + filepath.Join(dir, "missing")}, "no such file"},
		{corev1.SecretTypeDockerConfigJson, nil, "exactly one --from-file"},
	} {
		err := validateCredentialFiles(c.typ, c.sources)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %v: refused: %v", c.typ, c.sources, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %v: %v, want an error saying %q", c.typ, c.sources, err, c.want)
		}
	}
}
