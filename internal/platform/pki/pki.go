// Package pki owns pullgate's certificate authority and the keys made from it: the
// API server's serving certificate, the service-account signing key and the client
// certificates of the admin and the embedded components. Files are created once,
// never overwritten, and a file that exists but cannot be read is an error naming it.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// File names inside the PKI directory.
const (
	CAFile              = "ca.crt"
	CAKeyFile           = "ca.key"
	ServingFile         = "apiserver.crt"
	ServingKeyFile      = "apiserver.key"
	ServiceAccountKey   = "sa.key"
	ServiceAccountPub   = "sa.pub"
	certLifetime        = 10 * 365 * 24 * time.Hour
	clockSkewAllowance  = 5 * time.Minute
	defaultCACommonName = "pullgate-ca"
)

// Dir is a directory of PEM files rooted at one CA.
type Dir struct {
	Path string
	CA   *x509.Certificate
	key  crypto.Signer
}

// KeyPair names a certificate and its private key on disk.
type KeyPair struct {
	CertFile string
	KeyFile  string
}

// Open loads the CA in path, creating it (and path) if neither file exists yet.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("pki directory %s: %w", path, err)
	}
	d := &Dir{Path: path}
	certPath, keyPath := d.file(CAFile), d.file(CAKeyFile)
	cert, signer, err := loadPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	if cert != nil {
		d.CA, d.key = cert, signer
		return d, nil
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl := template(pkix.Name{CommonName: defaultCACommonName})
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	if err := writeKeyPair(certPath, keyPath, der, key); err != nil {
		return nil, err
	}
	d.CA, _ = x509.ParseCertificate(der)
	d.key = key
	return d, nil
}

// ServingCert returns the API server's serving certificate for hosts (names and IP
// literals), creating it when missing. An existing certificate is kept as it is.
func (d *Dir) ServingCert(name string, hosts []string) (KeyPair, error) {
	return d.ensureLeaf(name, func(t *x509.Certificate) {
		t.Subject = pkix.Name{CommonName: hosts[0]}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else {
				t.DNSNames = append(t.DNSNames, h)
			}
		}
	})
}

// ClientCert returns a client certificate for user in groups, creating it when missing.
func (d *Dir) ClientCert(name, user string, groups ...string) (KeyPair, error) {
	return d.ensureLeaf(name, func(t *x509.Certificate) {
		t.Subject = pkix.Name{CommonName: user, Organization: groups}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

// ServiceAccountKeys returns the paths of the service-account signing key and its
// public half, creating them when missing.
func (d *Dir) ServiceAccountKeys() (privPath, pubPath string, err error) {
	privPath, pubPath = d.file(ServiceAccountKey), d.file(ServiceAccountPub)
	if exists(privPath) {
		key, err := readKey(privPath)
		if err != nil {
			return "", "", err
		}
		if !exists(pubPath) {
			return privPath, pubPath, writePublicKey(pubPath, key.Public())
		}
		if _, err := keyutil.PublicKeysFromFile(pubPath); err != nil {
			return "", "", corrupt(pubPath, err)
		}
		return privPath, pubPath, nil
	}
	if exists(pubPath) {
		return "", "", fmt.Errorf("pki file %s is missing but %s exists; restore it or move the pki directory aside", privPath, pubPath)
	}
	key, err := newKey()
	if err != nil {
		return "", "", err
	}
	if err := writeKey(privPath, key); err != nil {
		return "", "", err
	}
	return privPath, pubPath, writePublicKey(pubPath, key.Public())
}

// SigningKey returns the P-256 key stored as <name>.key, creating it when missing:
// e.g. the key the token service signs registry tokens with.
func (d *Dir) SigningKey(name string) (*ecdsa.PrivateKey, error) {
	path := d.file(name + ".key")
	if exists(path) {
		key, err := readKey(path)
		if err != nil {
			return nil, err
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("pki file %s: want a P-256 ECDSA key", path)
		}
		return ec, nil
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	return key, writeKey(path, key)
}

func (d *Dir) ensureLeaf(name string, fill func(*x509.Certificate)) (KeyPair, error) {
	kp := KeyPair{CertFile: d.file(name + ".crt"), KeyFile: d.file(name + ".key")}
	cert, _, err := loadPair(kp.CertFile, kp.KeyFile)
	if err != nil {
		return kp, err
	}
	if cert != nil {
		if err := cert.CheckSignatureFrom(d.CA); err != nil {
			return kp, fmt.Errorf("pki file %s: not signed by %s: %w", kp.CertFile, d.file(CAFile), err)
		}
		return kp, nil
	}
	key, err := newKey()
	if err != nil {
		return kp, err
	}
	tmpl := template(pkix.Name{})
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	fill(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.CA, key.Public(), d.key)
	if err != nil {
		return kp, fmt.Errorf("creating certificate %s: %w", kp.CertFile, err)
	}
	return kp, writeKeyPair(kp.CertFile, kp.KeyFile, der, key)
}

// loadPair reads a certificate and its key. Both missing is (nil, nil, nil): the
// caller creates them. One missing, unreadable or not matching the other is an error.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certExists, keyExists := exists(certPath), exists(keyPath)
	if !certExists && !keyExists {
		return nil, nil, nil
	}
	if certExists != keyExists {
		missing := keyPath
		if !certExists {
			missing = certPath
		}
		return nil, nil, fmt.Errorf("pki file %s is missing but its pair exists; restore it or move the pki directory aside", missing)
	}
	cert, err := readCert(certPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("pki file %s: key does not match certificate %s", keyPath, certPath)
	}
	return cert, key, nil
}

func (d *Dir) file(name string) string { return filepath.Join(d.Path, name) }

func template(subject pkix.Name) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-clockSkewAllowance),
		NotAfter:              now.Add(certLifetime),
		BasicConstraintsValid: true,
	}
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// corrupt names a PKI file that cannot be used, and what to do about it.
func corrupt(path string, err error) error {
	return fmt.Errorf("pki file %s: %v; the file is corrupt, restore it or move the pki directory aside", path, err)
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki file %s: %w", path, err)
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		return nil, corrupt(path, err)
	}
	return certs[0], nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki file %s: %w", path, err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, corrupt(path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, corrupt(path, fmt.Errorf("unsupported private key %T", key))
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

func writeKeyPair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: certutil.CertificateBlockType, Bytes: der}), 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	data, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	return writeNew(path, data, 0o600)
}

func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: keyutil.PublicKeyBlockType, Bytes: der}), 0o644)
}

// writeNew writes a new PKI file; an existing file is never replaced.
func writeNew(path string, data []byte, mode os.FileMode) error {
	if err := atomicfile.Create(path, data, mode); err != nil {
		return fmt.Errorf("pki file %s: %w", path, err)
	}
	return nil
}
