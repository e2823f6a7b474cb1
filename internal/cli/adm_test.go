package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"

	"pullgate.dev/pullgate/internal/node/clusterpullsecret"
)

// adm create-kubeconfig writes a kubeconfig whose client certificate names the user
// and groups, pointed at the server; without --output it prints it.
func TestAdmCreateKubeconfig(t *testing.T) {
	dir := t.TempDir()
	s, out, _ := streams()
	o := &CreateKubeconfigOptions{IOStreams: s, User: "alice", Groups: []string{"devs"}, DataDir: dir, Server: "https://127.0.0.1:6443", Output: filepath.Join(dir, "alice.kubeconfig")}
	if err := o.Run(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `kubeconfig for user "alice" written to`) {
		t.Errorf("printed %q", out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Output)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != o.Server || len(cfg.TLSClientConfig.CertData)+len(cfg.TLSClientConfig.CertFile) == 0 {
		t.Errorf("kubeconfig host %q, client certificate missing", cfg.Host)
	}
	out.Reset()
	o.Output = ""
	if err := o.Run(); err != nil || !strings.Contains(out.String(), "apiVersion: v1") {
		t.Errorf("printed kubeconfig: %v\n%s", err, out)
	}
}

// adm set-pull-secret stores a valid file as the cluster pull secret and refuses a
// broken one, changing nothing.
func TestAdmSetPullSecret(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.json"), filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, []byte(`{"auths":{"quay.io":{"auth":"dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"auths":`), 0o600); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	s, out, _ := streams()
	if err := (&SetPullSecretOptions{IOStreams: s, File: bad, Client: client}).Run(context.Background()); err == nil || out.Len() != 0 {
		t.Errorf("a broken file: %v, printed %q", err, out)
	}
	if err := (&SetPullSecretOptions{IOStreams: s, File: good, Client: client}).Run(context.Background()); err != nil || out.String() != "secret/pull-secret updated in namespace pullgate-system\n" {
		t.Fatalf("set-pull-secret: %q %v", out, err)
	}
	if _, err := client.CoreV1().Secrets(clusterpullsecret.Namespace).Get(context.Background(), clusterpullsecret.Name, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
}
