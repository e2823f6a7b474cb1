package kubeconfig

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"pullgate.dev/pullgate/internal/platform/pki"
)

// A client-certificate kubeconfig embeds what it needs, is readable by client-go,
// private (0600), and left untouched when nothing changed.
func TestWriteClientCert(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Open(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.ClientCert("alice", "alice", "devs")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "alice.kubeconfig")
	if err := WriteClientCert(path, "pullgate", "https://127.0.0.1:6443", filepath.Join(ca.Path, pki.CAFile), kp); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil || cfg.Host != "https://127.0.0.1:6443" || len(cfg.CertData) == 0 || len(cfg.CAData) == 0 {
		t.Fatalf("loaded %+v %v", cfg, err)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", info.Mode().Perm())
	}
	old := time.Now().Add(-time.Hour)
	_ = os.Chtimes(path, old, old)
	if err := WriteClientCert(path, "pullgate", "https://127.0.0.1:6443", filepath.Join(ca.Path, pki.CAFile), kp); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(path); !info.ModTime().Equal(old) {
		t.Error("an unchanged kubeconfig was rewritten")
	}
}
