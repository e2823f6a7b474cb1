package credplugin

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"

	"pullgate.dev/pullgate/internal/harness"
	"pullgate.dev/pullgate/internal/node/credprovider"
	"pullgate.dev/pullgate/internal/platform/pki"
	"pullgate.dev/pullgate/pkg/credentials"
)

func TestKubeletRunsThePlugin(t *testing.T) {
	ctx := harness.Context(t, 3*time.Minute)
	bin := pluginBinary(t)
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(binDir, credprovider.PluginName)); err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(dir, "credential-providers.yaml")
	// The configuration the README documents, for this test's registry.
	if err := os.WriteFile(configFile, credprovider.KubeletConfig([]string{env.RegistryHost}), 0o644); err != nil {
		t.Fatal(err)
	}
	// The kubelet asks the API server for the pod's token as the node would; here with
	// the administrator's client, for a real pod, bound to it.
	tokens := func(namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
		return env.Admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, tr, metav1.CreateOptions{})
	}
	accounts := func(namespace, name string) (*corev1.ServiceAccount, error) {
		return env.Admin.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	if err := plugin.RegisterCredentialProviderPlugins(configFile, binDir, tokens, accounts); err != nil {
		t.Fatal(err)
	}

	ns := env.Namespace(t, ctx, "plugin")
	pushToken, err := env.Account(ctx, ns, "pusher", "admin")
	if err != nil {
		t.Fatal(err)
	}
	pusher := dockerConfig(t, pushToken)
	image := env.RegistryHost + "/" + ns + "/app:v1"
	digest, err := harness.PushFile(ctx, pusher, image, []byte("pulled with the pod's own token"))
	if err != nil {
		t.Fatal(err)
	}

	for _, sa := range []string{"default", "doomed"} {
		if _, err := env.Account(ctx, ns, sa, ""); err != nil {
			t.Fatal(err)
		}
	}
	lookup := func(sa string) credentials.Credential {
		t.Helper()
		pod, err := env.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: sa + "-"},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "app", Image: image}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		keyring := plugin.NewExternalCredentialProviderDockerKeyring(ns, pod.Name, string(pod.UID), sa)
		found, ok := keyring.Lookup(image)
		if !ok || len(found) != 1 {
			t.Fatalf("the kubelet's keyring found %d credentials for %s", len(found), image)
		}
		return credentials.Credential{Username: found[0].Username, Password: found[0].Password}
	}

	t.Run("the kubelet's code gets the pod's token and pulls with it", func(t *testing.T) {
		cred := lookup("default")
		if cred.Username != "serviceaccount" || cred.Password == "" {
			t.Fatalf("credential for user %q", cred.Username)
		}
		if got := digestWith(t, ctx, cred, image); got != digest {
			t.Fatalf("pulled %q, want %s", got, digest)
		}
	})

	// The registry takes tokens for its own audience and the API server's (a user's
	// kubectl token logs in); a token minted for a third party is refused.
	t.Run("a token for another audience is refused", func(t *testing.T) {
		tr, err := env.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault.example.com"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := digestWith(t, ctx, credentials.Credential{Username: "serviceaccount", Password: tr.Status.Token}, image); got != "" {
			t.Fatal("a token for vault.example.com pulled from the registry")
		}
	})

	// An attacker holding a token past its expiry: the same token re-signed with the
	// API server's own key, so that only its times are wrong, is refused; re-signed
	// with its times kept, it still pulls (the re-signing is sound).
	t.Run("an expired token is refused", func(t *testing.T) {
		cred := lookup("default")
		past := time.Now().Add(-2 * time.Hour)
		kept := resign(t, cred.Password, nil)
		if got := digestWith(t, ctx, credentials.Credential{Username: cred.Username, Password: kept}, image); got != digest {
			t.Fatalf("the token re-signed unchanged did not pull (%q): the test cannot tell expiry from a bad signature", got)
		}
		expired := resign(t, cred.Password, map[string]int64{"iat": past.Unix(), "nbf": past.Unix(), "exp": past.Add(time.Hour).Unix()})
		if got := digestWith(t, ctx, credentials.Credential{Username: cred.Username, Password: expired}, image); got != "" {
			t.Fatal("a token that expired an hour ago pulled from the registry")
		}
	})

	t.Run("a deleted service account's token is refused", func(t *testing.T) {
		cred := lookup("doomed")
		if got := digestWith(t, ctx, cred, image); got != digest {
			t.Fatalf("before the delete: pulled %q", got)
		}
		if err := env.Admin.CoreV1().ServiceAccounts(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The token service caches a review for 10 s.
		if !harness.Eventually(ctx, 20*time.Second, func(ctx context.Context) bool { return digestWith(t, ctx, cred, image) == "" }) {
			t.Fatal("the token of a deleted service account still pulls")
		}
	})
}

// resign is token with its claims' times replaced by times, signed again with the API
// server's service-account key (up's DIR/pki/sa.key), under the same header.
func resign(t *testing.T, token string, times map[string]int64) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for k, v := range times {
		claims[k] = v
	}
	if payload, err = json.Marshal(claims); err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(env.DataDir, "pki", pki.ServiceAccountKey))
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	switch key := key.(type) {
	case *rsa.PrivateKey: // RS256
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey: // ES256: r and s, 32 bytes each
		var r, s *big.Int
		if r, s, err = ecdsa.Sign(rand.Reader, key, sum[:]); err == nil {
			sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		}
	default:
		t.Fatalf("service-account key of type %T", key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// digestWith is the image's digest as seen with cred, or "" when refused.
func digestWith(t *testing.T, ctx context.Context, cred credentials.Credential, image string) string {
	t.Helper()
	out, err := harness.Crane(ctx, harness.DockerConfigFor(t, env.RegistryHost, cred), "digest", image)
	if err != nil {
		if !strings.Contains(out, "UNAUTHORIZED") && !strings.Contains(out, "401") {
			t.Logf("refused: %s", out)
		}
		return ""
	}
	return strings.TrimSpace(out)
}

func dockerConfig(t *testing.T, token string) string {
	return harness.DockerConfigFor(t, env.RegistryHost, credentials.Credential{Username: "pullgate", Password: token})
}

// Bad input is one line on stderr and exit 1, with nothing on stdout for the kubelet
// to misread.
func TestBadRequestIsRefused(t *testing.T) {
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	commands := map[string][]string{
		"pullgate-credential-provider": {pluginBinary(t), "--registry-host", "localhost:5000"},
		"pullgate credential-provider": {bin, "credential-provider", "--registry-host", "localhost:5000"},
	}
	for name, in := range map[string]string{
		"malformed JSON": `{"apiVersion":`,
		"wrong version":  `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","kind":"CredentialProviderRequest","image":"localhost:5000/a/b"}`,
		"no token":       `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"localhost:5000/a/b"}`,
	} {
		for command, args := range commands {
			t.Run(command+"/"+name, func(t *testing.T) {
				cmd := exec.Command(args[0], args[1:]...)
				cmd.Stdin = strings.NewReader(in)
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Fatalf("exit: %v", err)
				}
				if stdout.Len() != 0 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 || !strings.HasPrefix(stderr.String(), "error: ") {
					t.Fatalf("stdout %q, stderr %q: want nothing and one error line", stdout.String(), stderr.String())
				}
			})
		}
	}
}

// pluginBinary is bin/pullgate-credential-provider, which make build puts beside
// pullgate.
func pluginBinary(t *testing.T) string {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(filepath.Dir(bin), "pullgate-credential-provider")
	if _, err := os.Stat(plugin); err != nil {
		t.Fatalf("%v: make build makes it", err)
	}
	return plugin
}
