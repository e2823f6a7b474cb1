// Package kubeconfig writes the kubeconfig files pullgate hands to people and to its
// embedded components.
package kubeconfig

import (
	"bytes"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
	"pullgate.dev/pullgate/internal/platform/pki"
)

// WriteClientCert writes a kubeconfig with one context named name that reaches server
// with a client certificate. Certificates are embedded, so the file can be copied
// elsewhere. An unchanged file is left alone; a changed one is replaced atomically.
func WriteClientCert(path, name, server, caFile string, client pki.KeyPair) error {
	caData, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	certData, err := os.ReadFile(client.CertFile)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	keyData, err := os.ReadFile(client.KeyFile)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return Write(path, New(name, server, caData, &clientcmdapi.AuthInfo{
		ClientCertificateData: certData,
		ClientKeyData:         keyData,
	}))
}

// New builds a kubeconfig with a single cluster, user and context, all called name.
func New(name, server string, caData []byte, user *clientcmdapi.AuthInfo) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[name] = user
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	cfg.CurrentContext = name
	return cfg
}

// Write stores cfg at path with mode 0600, replacing the file atomically when its
// content differs.
func Write(path string, cfg *clientcmdapi.Config) error {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return atomicfile.Replace(path, data, 0o600)
}
