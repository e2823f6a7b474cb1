package datadir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One pullgate at a time: a second Open of a locked directory fails, naming it; after
// Close it opens again.
func TestOneUserAtATime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("second open: %v, want an error naming %s", err, path)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}

func TestDefaultFollowsXDG(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/somewhere")
	if got := Default(); got != "/somewhere/pullgate" {
		t.Errorf("Default() = %q", got)
	}
	t.Setenv("XDG_DATA_HOME", "")
	home, _ := os.UserHomeDir()
	if got := Default(); got != filepath.Join(home, ".local", "share", "pullgate") {
		t.Errorf("Default() = %q", got)
	}
}
