package credprovider

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Installing writes the binary and the configuration once, puts back what was changed
// or removed, and leaves alone what is already right.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "plugin")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	in := Installation{Binary: src, BinDir: filepath.Join(dir, "host", "bin"), ConfigFile: filepath.Join(dir, "config.yaml"), RegistryHosts: []string{"registry.example.com:5000"}}
	bin := filepath.Join(in.BinDir, PluginName)

	wrote, err := in.Install()
	if err != nil || !slices.Equal(wrote, []string{bin, in.ConfigFile}) {
		t.Fatalf("first install wrote %v, %v", wrote, err)
	}
	if info, err := os.Stat(bin); err != nil || info.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v %v", info, err)
	}
	if data, _ := os.ReadFile(in.ConfigFile); string(data) != string(KubeletConfig(in.RegistryHosts)) {
		t.Fatalf("config:\n%s", data)
	}
	if wrote, err := in.Install(); err != nil || len(wrote) != 0 {
		t.Fatalf("second install wrote %v, %v", wrote, err)
	}
	if err := os.WriteFile(in.ConfigFile, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if wrote, err := in.Install(); err != nil || len(wrote) != 2 {
		t.Fatalf("after an edit and a removal, install wrote %v, %v", wrote, err)
	}
	if _, err := (Installation{Binary: src, BinDir: in.BinDir, ConfigFile: in.ConfigFile}).Install(); err == nil {
		t.Error("an installation with no registry host was accepted")
	}
}
