package credentials

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func secret(typ corev1.SecretType, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "project-a", Name: "pull"}, Type: typ, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

const authsDoc = `{"auths":{"quay.io":{"auth":"dTpwYQ=="}}}`

func TestFromSecretTypes(t *testing.T) {
	tests := []struct {
		name    string
		secret  *corev1.Secret
		dataKey string
	}{
		{"dockerconfigjson", secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockerconfigjson": authsDoc}), ".dockerconfigjson"},
		{"dockercfg", secret(corev1.SecretTypeDockercfg, map[string]string{".dockercfg": `{"quay.io":{"auth":"dTpwYQ=="}}`}), ".dockercfg"},
		{"podmanconfigjson from auth.json", secret(SecretTypePodmanConfigJSON, map[string]string{"auth.json": authsDoc}), "auth.json"},
		{"podmanconfigjson with another base name", secret(SecretTypePodmanConfigJSON, map[string]string{"my-auth.json": authsDoc}), "my-auth.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := FromSecret(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			want := Source{Kind: "secret", Name: "project-a/pull", DataKey: tt.dataKey}
			if cfg.Source != want || len(cfg.Entries) != 1 || cfg.Entries[0].Username != "u" || cfg.Entries[0].Source != want {
				t.Errorf("got %+v", cfg)
			}
		})
	}
}

func TestFromSecretRefusals(t *testing.T) {
	tests := []struct {
		name   string
		secret *corev1.Secret
		is     error
		say    []string
	}{
		{"opaque holding a docker config", secret(corev1.SecretTypeOpaque, map[string]string{".dockerconfigjson": authsDoc}), ErrWrongType,
			[]string{"project-a/pull", "Opaque", "kubelet ignores", "--type=kubernetes.io/dockerconfigjson"}},
		{"service-account token", secret(corev1.SecretTypeServiceAccountToken, map[string]string{"token": "t"}), ErrWrongType, []string{"project-a/pull", "kubernetes.io/service-account-token"}},
		{"podman with two unknown keys", secret(SecretTypePodmanConfigJSON, map[string]string{"a": authsDoc, "b": authsDoc}), ErrMissingKey, []string{"project-a/pull", "[a b]"}},
		{"bad auth", secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockerconfigjson": `{"auths":{"quay.io":{"auth":"%%%"}}}`}), ErrBadAuth, []string{"secret project-a/pull (key .dockerconfigjson)", `"quay.io"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromSecret(tt.secret)
			if !errors.Is(err, tt.is) {
				t.Fatalf("got %v, want %v", err, tt.is)
			}
			for _, s := range tt.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}

// A secret of the kubelet's types with nothing under its key gives nothing, as in
// the kubelet, and a warning says so.
func TestEmptySecretsGiveNothingAndSaySo(t *testing.T) {
	for _, s := range []*corev1.Secret{
		secret(corev1.SecretTypeDockerConfigJson, map[string]string{"config.json": authsDoc}),
		secret(corev1.SecretTypeDockercfg, nil),
		secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockerconfigjson": ""}),
	} {
		cfg, err := FromSecret(s)
		if err != nil || len(cfg.Entries) != 0 || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "project-a/pull") {
			t.Errorf("%s %v: %+v %v", s.Type, s.Data, cfg, err)
		}
	}
}

func TestSecretsNeverRunHelpers(t *testing.T) {
	s := secret(corev1.SecretTypeDockerConfigJson, map[string]string{".dockerconfigjson": `{"auths":{},"credsStore":"evil","credHelpers":{"quay.io":"evil"}}`})
	cfg, err := FromSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CredsStore != "" || len(cfg.Entries) != 0 || len(cfg.Warnings) != 2 {
		t.Errorf("secret kept helpers: %+v", cfg)
	}
}
