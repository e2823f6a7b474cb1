// Package atomicfile writes files so that a reader never sees half of one: through a
// synced temporary file in the same directory, then a link or a rename.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Create writes data to path, which must not exist yet: an existing file is never
// replaced.
func Create(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, os.Link)
}

// Replace writes data to path, replacing any file there in one step.
func Replace(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, os.Rename)
}

func write(path string, data []byte, mode os.FileMode, place func(tmp, path string) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = place(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
