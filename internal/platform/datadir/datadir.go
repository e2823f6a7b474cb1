// Package datadir owns pullgate's data directory: where it is by default, that it is
// writable, and that one pullgate at a time uses it.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Default is $XDG_DATA_HOME/pullgate, else ~/.local/share/pullgate: a place any user
// can write without root.
func Default() string {
	if xdg := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "pullgate")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "pullgate")
	}
	return filepath.Join(os.TempDir(), "pullgate")
}

// Dir is an open, locked data directory.
type Dir struct {
	Path string
	lock *os.File
}

// Open makes path if needed, checks it is writable and takes its lock, so two
// pullgates never share one etcd.
func Open(path string) (*Dir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s is not writable (%v): choose another with --data-dir", abs, rootCause(err))
	}
	probe, err := os.CreateTemp(abs, ".write-test-*")
	if err != nil {
		return nil, fmt.Errorf("data dir %s is not writable (%v): choose another with --data-dir", abs, rootCause(err))
	}
	probe.Close()
	os.Remove(probe.Name())

	lockPath := filepath.Join(abs, "pullgate.lock")
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another pullgate (lock %s held): stop it or choose another --data-dir", abs, lockPath)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", lockPath, err)
	}
	return &Dir{Path: abs, lock: lock}, nil
}

// MinFree is the free space pullgate up needs in its data directory: etcd
// preallocates 64 MiB of write-ahead log, and needs room to grow its database.
const MinFree = 256 << 20

// RequireFree refuses a data directory with less than min bytes free.
func (d *Dir) RequireFree(min int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Path, &st); err != nil {
		return nil // cannot tell: let the components say
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < min {
		return fmt.Errorf("data dir %s has only %d MiB free; pullgate up needs at least %d MiB there (etcd preallocates 64 MiB of write-ahead log): free space or choose another --data-dir",
			d.Path, free>>20, min>>20)
	}
	return nil
}

// Close releases the lock.
func (d *Dir) Close() error { return d.lock.Close() }

func rootCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
