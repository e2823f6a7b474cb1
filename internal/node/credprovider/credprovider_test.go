package credprovider

import (
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	kubeletv1 "k8s.io/kubelet/config/v1"
	v1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"

	"pullgate.dev/pullgate/internal/registry/tokenauth"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"exp":%d,"sub":"system:serviceaccount:a:default"}`, exp.Unix()))) + ".c2ln"
}

func request(image, token string) string {
	return fmt.Sprintf(`{"apiVersion":%q,"kind":"CredentialProviderRequest","image":%q,"serviceAccountToken":%q}`, APIVersion, image, token)
}

func TestRespond(t *testing.T) {
	p := Plugin{RegistryHosts: []string{"registry.example.com:5000", "localhost:5000"}, Now: func() time.Time { return now }}
	token := jwt(now.Add(10 * time.Minute))

	resp, err := p.Respond(strings.NewReader(request("registry.example.com:5000/a/app:v1", token)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.APIVersion != APIVersion || resp.Kind != "CredentialProviderResponse" || resp.CacheKeyType != v1.RegistryPluginCacheKeyType {
		t.Errorf("response header %+v", resp.TypeMeta)
	}
	auth, ok := resp.Auth["registry.example.com:5000"]
	if !ok || auth.Password != token || len(resp.Auth) != 1 {
		t.Errorf("auth %v, want the request's token for the registry's host only", resp.Auth)
	}
	// Cached until a minute before the token expires: the kubelet never uses it
	// expired.
	if resp.CacheDuration == nil || resp.CacheDuration.Duration != 9*time.Minute {
		t.Errorf("cache duration %v, want 9m", resp.CacheDuration)
	}

	// Another registry: no credential and no caching, so the kubelet uses pull secrets.
	resp, err = p.Respond(strings.NewReader(request("quay.io/org/app:v1", token)))
	if err != nil || len(resp.Auth) != 0 || resp.CacheDuration == nil || resp.CacheDuration.Duration != 0 {
		t.Errorf("other registry: %v %+v", err, resp)
	}
	// A token in its last minute is not cached at all.
	resp, _ = p.Respond(strings.NewReader(request("localhost:5000/a/app", jwt(now.Add(30*time.Second)))))
	if resp.CacheDuration.Duration != 0 {
		t.Errorf("a token about to expire is cached for %v", resp.CacheDuration.Duration)
	}
}

func TestBadRequests(t *testing.T) {
	p := Plugin{RegistryHosts: []string{"localhost:5000"}}
	token := jwt(time.Now().Add(time.Hour))
	for name, tc := range map[string]struct{ in, want string }{
		"malformed JSON":   {`{"apiVersion":`, "malformed JSON"},
		"empty":            {``, "empty input"},
		"wrong version":    {strings.Replace(request("localhost:5000/a/b", token), APIVersion, "credentialprovider.kubelet.k8s.io/v1alpha1", 1), `apiVersion "credentialprovider.kubelet.k8s.io/v1alpha1"`},
		"no token":         {request("localhost:5000/a/b", ""), "tokenAttributes.serviceAccountTokenAudience"},
		"bad image":        {request("localhost:5000/A B", token), `request image "localhost:5000/A B"`},
		"field wrong type": {`{"apiVersion":"` + APIVersion + `","kind":"CredentialProviderRequest","image":7}`, `field "image"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Respond(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Fatal("the error shows the token")
			}
		})
	}
}

// The configuration is one the kubelet's own types read strictly, for the registry's
// audience, cached per token.
func TestKubeletConfig(t *testing.T) {
	data := KubeletConfig([]string{"registry.example.com:5000", "localhost:5000"}, "credential-provider")
	var cfg kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if cfg.Kind != "CredentialProviderConfig" || len(cfg.Providers) != 1 {
		t.Fatalf("%+v", cfg)
	}
	p := cfg.Providers[0]
	wantArgs := []string{"credential-provider", "--registry-host", "registry.example.com:5000", "--registry-host", "localhost:5000"}
	if p.Name != PluginName || !slices.Equal(p.MatchImages, []string{"registry.example.com:5000", "localhost:5000"}) || !slices.Equal(p.Args, wantArgs) {
		t.Errorf("provider %+v", p)
	}
	ta := p.TokenAttributes
	if ta == nil || ta.ServiceAccountTokenAudience != tokenauth.Service || ta.CacheType != kubeletv1.TokenServiceAccountTokenCacheType || ta.RequireServiceAccount == nil || !*ta.RequireServiceAccount {
		t.Errorf("tokenAttributes %+v", ta)
	}
}

// The README's kubelet configuration is this package's, verbatim.
func TestReadmeShowsTheKubeletConfig(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := "```yaml\n" + string(KubeletConfig([]string{"pullgate-registry.pullgate-system.svc:5000"})) + "```\n"
	if !strings.Contains(string(readme), want) {
		t.Errorf("the README does not show the kubelet configuration:\n%s", want)
	}
}
