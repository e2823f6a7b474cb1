package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCreatesOnceAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	first, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := first.ServingCert("apiserver", []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(serving.CertFile)

	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !again.CA.Equal(first.CA) {
		t.Error("reopening made a new CA")
	}
	if _, err := again.ServingCert("apiserver", []string{"other"}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(serving.CertFile)
	if string(before) != string(after) {
		t.Error("an existing serving certificate was overwritten")
	}

	cert, err := readCert(serving.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(first.CA)
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool}); err != nil {
		t.Errorf("serving certificate does not verify for localhost: %v", err)
	}
	if info, _ := os.Stat(serving.KeyFile); info.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", info.Mode().Perm())
	}
}

func TestBrokenFilesAreErrorsNamingThem(t *testing.T) {
	dir := t.TempDir()
	ca, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.ClientCert("admin", "a", "system:masters"); err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other.Path, CAKeyFile))

	tests := []struct {
		name, file string
		content    []byte
		want       string
	}{
		{"garbage certificate", "admin.crt", []byte("garbage"), "the file is corrupt"},
		{"key of another CA", CAKeyFile, otherKey, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			saved, _ := os.ReadFile(path)
			t.Cleanup(func() { os.WriteFile(path, saved, 0o600) })
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			ca, err := Open(dir)
			if err == nil {
				_, err = ca.ClientCert("admin", "a", "system:masters")
			}
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s and saying %q", err, path, tt.want)
			}
		})
	}
	t.Run("one half of a pair missing", func(t *testing.T) {
		if err := os.Remove(filepath.Join(dir, "admin.key")); err != nil {
			t.Fatal(err)
		}
		_, err := ca.ClientCert("admin", "a")
		if err == nil || !strings.Contains(err.Error(), "admin.key is missing") {
			t.Fatalf("got %v", err)
		}
		if _, statErr := os.Stat(filepath.Join(dir, "admin.crt")); errors.Is(statErr, fs.ErrNotExist) {
			t.Error("the remaining certificate was removed")
		}
	})
}
