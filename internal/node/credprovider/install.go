package credprovider

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"pullgate.dev/pullgate/internal/platform/atomicfile"
)

// Installation is the plugin on a node, where the kubelet finds it: the binary in the
// kubelet's --image-credential-provider-bin-dir and the configuration at its
// --image-credential-provider-config.
type Installation struct {
	// Binary is the plugin binary to install.
	Binary string
	// BinDir and ConfigFile are the kubelet's two flags.
	BinDir, ConfigFile string
	// RegistryHosts are the integrated registry's host[:port] names.
	RegistryHosts []string
}

// Install writes what differs from the wanted binary and configuration, each in one
// step (a kubelet running the plugin meanwhile sees the old file or the new one, never
// half of one), and returns the paths it wrote. Run again, it writes nothing.
func (in Installation) Install() ([]string, error) {
	if len(in.RegistryHosts) == 0 {
		return nil, errors.New("--registry-host: give at least one host[:port] of the integrated registry")
	}
	binary, err := os.ReadFile(in.Binary)
	if err != nil {
		return nil, fmt.Errorf("the plugin binary: %w", err)
	}
	if err := os.MkdirAll(in.BinDir, 0o755); err != nil {
		return nil, fmt.Errorf("--bin-dir: %w", err)
	}
	var wrote []string
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(in.BinDir, PluginName), binary, 0o755},
		{in.ConfigFile, KubeletConfig(in.RegistryHosts), 0o644},
	} {
		if same(f.path, f.data, f.mode) {
			continue
		}
		if err := atomicfile.Replace(f.path, f.data, f.mode); err != nil {
			return wrote, err
		}
		wrote = append(wrote, f.path)
	}
	return wrote, nil
}

func same(path string, data []byte, mode os.FileMode) bool {
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != mode || info.Size() != int64(len(data)) {
		return false
	}
	have, err := os.ReadFile(path)
	return err == nil && bytes.Equal(have, data)
}
