package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateNeverReplacesAndReplaceDoes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := Create(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, []byte("two"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Errorf("Create over an existing file: %v, want ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "one" {
		t.Errorf("content %q", data)
	}
	if err := Replace(path, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	if data, _ := os.ReadFile(path); string(data) != "three" || info.Mode().Perm() != 0o644 {
		t.Errorf("after Replace: %q %v", data, info.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
